from pathlib import Path

import pytest

from nnunet_cdl.consensus.curriculum_file import case_fingerprint, read_curriculum, write_curriculum
from nnunet_cdl.consensus.schedule import Phase, easy_then_hard, phase_index, phase_keys, validate_phases
from nnunet_cdl.consensus.tiers import Thresholds
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json, write_json

TIERS = {"easy": ["e1", "e2", "e3"], "hard": ["h1", "h2"], "erroneous": ["x1"]}


def _curriculum(tmp_path: Path, dataset_cases: list[str] | None = None) -> Path:
    path = tmp_path / "curriculum.json"
    cases = dataset_cases if dataset_cases is not None else ["e1", "e2", "e3", "h1", "h2"]
    write_curriculum(path, TIERS, cases, Thresholds(0.9, 0.8), {"ds_mode": "others"})
    return path


@pytest.mark.parametrize(("epochs", "boundary"), [(2500, 1000), (1000, 400), (5, 2), (2, 1), (1, 1), (50, 20)])
def test_paper_ratio_scaled_to_the_epoch_count(epochs: int, boundary: int) -> None:
    phases = easy_then_hard(epochs)
    assert phases == [Phase(0, ("easy",)), Phase(boundary, ("easy", "hard"))]
    validate_phases(phases)


def test_phase_of_each_epoch() -> None:
    phases = [Phase(0, ("easy",)), Phase(3, ("easy", "hard")), Phase(7, ("hard",))]
    assert [phase_index(phases, e) for e in range(9)] == [0, 0, 0, 1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("phases", [
    [],
    [Phase(1, ("easy",))],
    [Phase(0, ("easy",)), Phase(0, ("hard",))],
    [Phase(0, ("easy",)), Phase(5, ("easy", "erroneous"))],
    [Phase(0, ())],
])
def test_invalid_schedules_are_refused(phases: list[Phase]) -> None:
    with pytest.raises(CdlError):
        validate_phases(phases)


def test_phase_keys_keep_split_order_and_never_erroneous(tmp_path: Path) -> None:
    curriculum = read_curriculum(_curriculum(tmp_path, ["e1", "e2", "e3", "h1", "h2", "x1"]))
    train = ["h2", "e3", "x1", "e1", "h1"]
    assert phase_keys(train, curriculum, ("easy",)) == ["e3", "e1"]
    assert phase_keys(train, curriculum, ("easy", "hard")) == ["h2", "e3", "e1", "h1"]
    assert phase_keys(train, curriculum, ("erroneous",)) == []


def test_curriculum_file_round_trip_and_staleness(tmp_path: Path) -> None:
    curriculum = read_curriculum(_curriculum(tmp_path))
    assert curriculum.cases(["hard", "easy"]) == ["e1", "e2", "e3", "h1", "h2"]
    curriculum.check_matches(["h2", "h1", "e3", "e2", "e1"], "preprocessed")
    with pytest.raises(CdlError, match=r"stale.*\['h2'\].*\['z9'\]"):
        curriculum.check_matches(["e1", "e2", "e3", "h1", "z9"], "preprocessed")
    with pytest.raises(CdlError, match="unknown tier"):
        curriculum.cases(["medium"])


def test_hand_edited_curriculum_is_refused(tmp_path: Path) -> None:
    path = _curriculum(tmp_path)
    data = read_json(path)
    data["dataset_cases"].append("e9")
    write_json(path, data)
    with pytest.raises(CdlError, match="fingerprint"):
        read_curriculum(path)
    data["dataset_cases"].remove("e9")
    data["tiers"]["hard"].append("e1")
    write_json(path, data)
    with pytest.raises(CdlError, match="e1 is in tiers"):
        read_curriculum(path)
    assert data["case_fingerprint"] == case_fingerprint(data["dataset_cases"])

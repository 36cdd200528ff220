"""scripts/eval_consensus.py on real anatomy (the shared TotalSegmentator labels): every mode measured, and the
written labels' Dice agrees with the generator's manifest where it must."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_consensus.py"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "totalseg"


@pytest.mark.skipif(not (SHARED / "ct.nii.gz").is_file(), reason="shared/data/totalseg is not beside the checkout")
def test_eval_consensus_measures_every_mode_on_real_anatomy(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("eval_consensus", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "results.json"
    table = tmp_path / "table.md"
    assert script.main(["--work", str(tmp_path), "--cases", "4", "--seeds", "3", "--regimes", "failing-labeler",
                        "--real-label", str(SHARED / "label_ts_default.nii.gz"), "--real-image",
                        str(SHARED / "ct.nii.gz"), "--json", str(out), "--markdown", str(table)]) == 0
    results = json.loads(out.read_text())
    rows = results["table"]["failing-labeler/seed3"]
    assert list(rows) == [f"{r}/{d}" for r, d in script.MODES]
    for row in rows.values():
        assert row["cases"] == 4 and row["failed"] == 0
        assert 0.0 < row["written"] <= 1.0 and row["cases_per_min"] > 0
    assert len({row["best_candidate"] for row in rows.values()}) == 1  # the oracle does not depend on the mode
    # select writes the selected candidate: its Dice recomputed from labelsTr equals the manifest's
    manifest = json.loads(next((tmp_path / "raw").glob("Dataset*")).joinpath("manifest.json").read_text())
    folder = next((tmp_path / "consensus").glob("Dataset*_selectothers"))
    with open(folder / "consensus.csv") as handle:
        selected = {row["case"]: row["selected"] for row in csv.DictReader(handle)}
    expected = sum(manifest["cases"][c]["sources"][s]["dice"] for c, s in selected.items()) / len(selected)
    assert rows["select/others"]["written"] == pytest.approx(expected, abs=2e-4)
    assert set(results["targets_of_the_default"]["failing-labeler/seed3"]) == {
        "written >= best candidate", "written >= select and vote", "good kept >= 95 %",
        "Spearman(DS, written) >= 0.85"}
    assert table.read_text().count("| failing-labeler | 3 |") == len(script.MODES)

"""End to end: nnUNetTrainerCDL on a tiny preprocessed dataset, interrupted in phase 1 and continued into phase 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnunet_cdl.consensus.curriculum_file import write_curriculum
from nnunet_cdl.consensus.schedule import Phase
from nnunet_cdl.consensus.tiers import Thresholds
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import Geometry, write_volume

DATASET = "Dataset931_CdlToy"
TIERS = {"easy": ["toy_0", "toy_1", "toy_2"], "hard": ["toy_3", "toy_4"], "erroneous": ["toy_5"]}
SPLIT = {"train": ["toy_0", "toy_1", "toy_3", "toy_5"], "val": ["toy_2", "toy_4"]}


def _write_raw(raw: Path) -> None:
    folder = raw / DATASET
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    geometry = Geometry((1.2, 1.2, 4.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    rng = np.random.default_rng(0)
    for i in range(6):
        label = np.zeros((16, 48, 48), np.uint8)
        label[4:12, 8 + i:24, 8:30] = 1
        label[6:10, 30:40, 20 + i:36] = 2
        image = np.where(label == 1, 60, np.where(label == 2, 150, -50)) + rng.normal(0, 10, label.shape)
        write_volume(folder / "imagesTr" / f"toy_{i}_0000.nii.gz", image.astype(np.int16), geometry)
        write_volume(folder / "labelsTr" / f"toy_{i}.nii.gz", label, geometry)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "right_kidney": 2},
        "numTraining": 6, "file_ending": ".nii.gz"}))
    write_curriculum(folder / "curriculum.json", TIERS, [f"toy_{i}" for i in range(6)], Thresholds(0.9, 0.8), {})


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nnU-Net folders with the toy dataset planned by LightUNetPlanner (small patch) and preprocessed."""
    root = tmp_path_factory.mktemp("nnunet")
    mp = pytest.MonkeyPatch()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
        mp.setenv(name, str(root / name))
    _write_raw(root / "nnUNet_raw")
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiment_dataset,
        preprocess,
    )

    from nnunet_cdl.planning.light_unet import LightUNetPlanner
    from nnunet_cdl.planning.preset import load_preset

    preset = json.loads((Path(__file__).parents[2] / "configs" / "light_unet.json").read_text())
    preset.update(patch_size=[16, 48, 48], features_per_stage=[8, 16, 32, 64])
    (root / "preset.json").write_text(json.dumps(preset))
    loaded = load_preset(root / "preset.json")
    extract_fingerprints([931], num_processes=1, check_dataset_integrity=False, show_progress_bar=False)
    plan_experiment_dataset(931, lambda *a, **k: LightUNetPlanner(*a, preset=loaded, **k))
    preprocess([931], "nnUNetPlansLightUNet", ["3d_fullres"], [1], show_progress_bar=False)
    folder = root / "nnUNet_preprocessed" / DATASET
    (folder / "splits_final.json").write_text(json.dumps([SPLIT]))
    yield root
    mp.undo()


def _trainer(root: Path, cls: type, num_epochs: int, continue_training: bool = False):
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json

    folder = root / "nnUNet_preprocessed" / DATASET
    plans = {**load_json(folder / "nnUNetPlansLightUNet.json"), "continue_training": continue_training}
    trainer = cls(plans, "3d_fullres", 0, load_json(folder / "dataset.json"), device=torch.device("cpu"))
    trainer.num_epochs = num_epochs
    return trainer


def _phased_trainer_class() -> type:
    from nnunet_cdl.training.curriculum import nnUNetTrainerCDL
    from nnunet_cdl.training.light_unet import TrainingSchedule

    class nnUNetTrainerCDLTest(nnUNetTrainerCDL):
        schedule = TrainingSchedule(num_epochs=3, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1)

        def curriculum_phases(self) -> list[Phase]:
            return [Phase(0, ("easy",)), Phase(2, ("easy", "hard"))]

    return nnUNetTrainerCDLTest


@pytest.mark.slow
def test_curriculum_survives_continue_across_the_phase_boundary(preprocessed: Path) -> None:
    from nnunetv2.run.run_training import maybe_load_checkpoint

    cls = _phased_trainer_class()
    first = _trainer(preprocessed, cls, num_epochs=1)  # "interrupted" after epoch 0, still in phase 1
    first.run_training()
    assert first.curriculum_training_keys == ("toy_0", "toy_1")
    output = Path(first.output_folder)
    shutil.move(output / "checkpoint_final.pth", output / "checkpoint_latest.pth")

    second = _trainer(preprocessed, cls, num_epochs=3, continue_training=True)
    maybe_load_checkpoint(second, continue_training=True, validation_only=False)
    assert second.current_epoch == 1
    second.run_training()
    assert second.curriculum_training_keys == ("toy_0", "toy_1", "toy_3")  # erroneous toy_5 never
    assert sorted(second.dataloader_train.data_loader._data.identifiers) == ["toy_0", "toy_1", "toy_3"]
    assert sorted(second.dataloader_val.data_loader._data.identifiers) == SPLIT["val"]
    log = "".join(p.read_text() for p in sorted(output.glob("training_log_*.txt")))
    assert "curriculum phase 1/2 (easy) at epoch 1: 2 of 4 training cases, 2 validation cases" in log
    assert "curriculum: entering phase 2 (easy+hard) at epoch 2" in log
    assert "curriculum phase 2/2 (easy+hard) at epoch 2: 3 of 4 training cases" in log
    assert (output / "checkpoint_final.pth").is_file()


@pytest.mark.slow
def test_default_schedule_and_curriculum_errors(preprocessed: Path) -> None:
    from nnunet_cdl.training.curriculum import nnUNetTrainerCDL_5epochs

    trainer = _trainer(preprocessed, nnUNetTrainerCDL_5epochs, num_epochs=5)
    assert [p.start_epoch for p in trainer.curriculum_phases()] == [0, 2]
    assert trainer.do_split() == (["toy_0", "toy_1"], SPLIT["val"])
    trainer.current_epoch, trainer.curriculum_phase_index = 3, 1
    trainer.num_epochs = 20  # a budget re-estimate moves the easy + hard phase to epoch 8
    assert trainer.current_phase()[0] == 1  # no step back to easy only
    trainer.curriculum_phase_index = None  # a resumed run derives the phase from the epoch
    assert trainer.current_phase()[0] == 0
    raw_file = preprocessed / "nnUNet_raw" / DATASET / "curriculum.json"
    data = json.loads(raw_file.read_text())
    moved = raw_file.with_suffix(".bak")
    raw_file.rename(moved)
    try:
        with pytest.raises(CdlError, match="needs curriculum.json"):
            _trainer(preprocessed, nnUNetTrainerCDL_5epochs, 5).do_split()
        stale = preprocessed / "nnUNet_preprocessed" / DATASET / "curriculum.json"
        cases = data["dataset_cases"][:-1]
        write_curriculum(stale, TIERS, cases, Thresholds(0.9, 0.8), {})
        with pytest.raises(CdlError, match="stale"):
            _trainer(preprocessed, nnUNetTrainerCDL_5epochs, 5).do_split()
        stale.unlink()
    finally:
        moved.rename(raw_file)

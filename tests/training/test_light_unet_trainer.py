"""nnUNetTrainerLightUNet: the paper's protocol on top of nnU-Net (no data needed)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_cdl.errors import CdlError
from nnunet_cdl.networks.light_unet import count_parameters
from nnunet_cdl.planning.preset import load_preset
from nnunet_cdl.training.light_unet import (
    ElasticDeformation,
    ElasticMagnitude,
    TrainingSchedule,
    enable_elastic_deformation,
    epoch_costs,
    epochs_within_budget,
    flag_from_env,
    nnUNetTrainerLightUNet,
    nnUNetTrainerLightUNet_1epoch,
    nnUNetTrainerLightUNet_5epochs,
    schedule_from_env,
    time_budget_from_env,
)

LABELS = {"background": 0, **{f"organ{i}": i for i in range(1, 14)}}


def plans_from_preset() -> dict:
    preset = load_preset()
    config = {
        "data_identifier": "nnUNetPlansLightUNet_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": preset.batch_size, "patch_size": list(preset.patch_size),
        "median_image_size_in_voxels": [100, 300, 300], "spacing": list(preset.target_spacing),
        "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {},
        "architecture": preset.architecture(), "batch_dice": preset.batch_dice,
    }
    return {
        "dataset_name": "Dataset999_Test", "plans_name": preset.plans_name,
        "original_median_spacing_after_transp": [4.0, 1.2, 1.2], "original_median_shape_after_transp": [100, 300, 300],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": config}, "experiment_planner_used": "LightUNetPlanner",
        "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {},
    }


@pytest.fixture
def trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(cls=nnUNetTrainerLightUNet):
        monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
        monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
        plans = plans_from_preset()
        plans["continue_training"] = False
        dataset_json = {"labels": LABELS, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
        return cls(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))

    return make


def test_schedule_from_env() -> None:
    default = TrainingSchedule(1000, 250, 50)
    assert schedule_from_env(default, {}) == default
    env = {"nnUNet_cdl_num_epochs": "3", "nnUNet_cdl_num_val_iterations_per_epoch": " 7 "}
    assert schedule_from_env(default, env) == TrainingSchedule(3, 250, 7)
    for bad in ("0", "-2", "ten"):
        with pytest.raises(CdlError, match="nnUNet_cdl_num_epochs"):
            schedule_from_env(default, {"nnUNet_cdl_num_epochs": bad})


def test_elastic_magnitude_is_a_fraction_of_sigma_and_picklable() -> None:
    magnitude = pickle.loads(pickle.dumps(ElasticMagnitude(0.0, 0.5)))
    values = [magnitude(patch_size=(128, 192), dim=1, deformation_scale=0.1, image=None) for _ in range(200)]
    assert 0 <= min(values) and max(values) <= 0.5 * 0.1 * 192
    assert max(values) > 0.25 * 0.1 * 192


def test_training_pipeline_has_elastic_deformation_and_no_mirroring() -> None:
    transforms = nnUNetTrainerLightUNet.get_training_transforms(
        (32, 128, 192), (-np.pi, np.pi), [[1, 1, 1], [1, 0.5, 0.5]], None, True)
    spatial = [t for t in transforms.transforms if isinstance(t, SpatialTransform)]
    assert len(spatial) == 1 and spatial[0].p_elastic_deform == nnUNetTrainerLightUNet.elastic.probability > 0
    assert not any(isinstance(t, MirrorTransform) for t in transforms.transforms)


def test_elastic_deformation_moves_voxels() -> None:
    transforms = nnUNetTrainerLightUNet.get_training_transforms((8, 32, 32), (0.0, 0.0), None, None, False)
    spatial = enable_elastic_deformation(transforms, ElasticDeformation(1.0, (0.2, 0.2), (0.5, 0.5)))
    spatial.p_rotation = spatial.p_scaling = 0
    image = torch.linspace(0, 1, 32)[None, None, None].expand(1, 8, 32, 32).contiguous()
    segmentation = (image > 0.5).to(torch.int16)
    out = spatial(image=image.clone(), segmentation=segmentation.clone())
    assert out["image"].shape == (1, 8, 32, 32)
    assert not torch.allclose(out["image"], image, atol=1e-3)
    assert set(torch.unique(out["segmentation"]).tolist()) <= {-1, 0, 1}  # -1: outside the image, removed later


def test_protocol_optimizer_loss_network_and_mirroring(trainer) -> None:
    t = trainer()
    assert (t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch) == (1000, 250, 50)
    _, _, _, mirror_axes = t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes is None and t.inference_allowed_mirroring_axes is None
    network = t.build_network_architecture(t.plans_manager, t.configuration_manager, 1,
                                           t.label_manager.num_segmentation_heads, True)
    assert type(network).__name__ == "PlainConvUNet"
    assert 1.3e6 <= count_parameters(network) <= 1.5e6
    t.network = network
    optimizer, scheduler = t.configure_optimizers()
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.01, 0.99, True)
    assert isinstance(scheduler, PolyLRScheduler) and scheduler.exponent == 0.9
    loss = t._build_loss()
    assert isinstance(loss, DeepSupervisionWrapper) and isinstance(loss.loss, DC_and_CE_loss)


def test_short_variants_and_env_override(trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    one = trainer(nnUNetTrainerLightUNet_1epoch)
    assert (one.num_epochs, one.num_iterations_per_epoch, one.num_val_iterations_per_epoch) == (1, 4, 2)
    assert trainer(nnUNetTrainerLightUNet_5epochs).num_epochs == 5
    monkeypatch.setenv("nnUNet_cdl_num_epochs", "12")
    overridden = trainer(nnUNetTrainerLightUNet_5epochs)
    assert overridden.num_epochs == 12 and overridden.num_iterations_per_epoch == 4
    assert "overridden by environment" in Path(overridden.log_file).read_text()


def _random_batch(t, shape: tuple[int, int, int]) -> dict:
    """A batch of 1 random image and label map of `shape` (z, y, x) with the deep-supervision targets."""
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 14, size=(1, 1, *shape))).float()
    scales = t._get_deep_supervision_scales()
    targets = [torch.nn.functional.interpolate(target, scale_factor=tuple(s), mode="nearest") for s in scales]
    return {"data": torch.from_numpy(rng.normal(size=(1, 1, *shape)).astype(np.float32)), "target": targets}


def test_cpu_bf16_autocasts_the_steps_and_keeps_float32_weights(trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnunet_cdl.training.light_unet.cpu_supports_bf16", lambda: True)
    monkeypatch.setenv("nnUNet_cdl_cpu_bf16", "1")
    t = trainer()
    assert t.cpu_bf16 and "bfloat16 autocast on CPU" in Path(t.log_file).read_text()
    t.network = t.build_network_architecture(t.plans_manager, t.configuration_manager, 1,
                                             t.label_manager.num_segmentation_heads, True)
    t.optimizer, t.lr_scheduler = t.configure_optimizers()
    t.loss = t._build_loss()
    seen = []
    t.network.encoder.stages[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    batch = _random_batch(t, (32, 64, 64))
    loss = t.train_step(batch)["loss"]
    assert np.isfinite(float(loss)) and seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in t.network.parameters())
    t.network.eval()
    t.validation_step(batch)
    assert seen == [torch.bfloat16, torch.bfloat16]


def test_cpu_bf16_is_off_by_default_and_refused_without_native_support(trainer, monkeypatch) -> None:
    assert trainer().cpu_bf16 is False
    monkeypatch.setattr("nnunet_cdl.training.light_unet.cpu_supports_bf16", lambda: False)
    monkeypatch.setenv("nnUNet_cdl_cpu_bf16", "1")
    with pytest.raises(CdlError, match="no native bfloat16"):
        trainer()
    monkeypatch.setenv("nnUNet_cdl_cpu_bf16", "maybe")
    with pytest.raises(CdlError, match="must be 1 or 0"):
        trainer()


def test_epoch_costs_count_overhead_but_not_pauses_between_runs() -> None:
    starts, ends = [0.0, 10.0, 20.0, 1000.0], [9.0, 19.0, 29.0, 1009.0]
    assert epoch_costs(starts, ends, now=1010.0) == [10.0, 10.0, 9.0, 10.0]


def test_epochs_within_budget() -> None:
    assert epochs_within_budget([], 100.0, 50) == 50
    assert epochs_within_budget([10.0] * 3, 100.0, 50) == 10
    assert epochs_within_budget([10.0] * 3, 100.0, 8) == 8  # capped by the schedule
    assert epochs_within_budget([10.0] * 12, 100.0, 50) == 12  # over budget: stop now
    assert epochs_within_budget([30.0, 5.0, 5.0, 5.0, 5.0, 5.0], 100.0, 50) == 15  # recent cost, not the first epoch


def test_budget_and_final_validation_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert time_budget_from_env({}) is None
    assert time_budget_from_env({"nnUNet_cdl_time_budget_min": "1.5"}) == 90.0
    for bad in ("0", "-3", "soon"):
        with pytest.raises(CdlError, match="must be a positive number"):
            time_budget_from_env({"nnUNet_cdl_time_budget_min": bad})
    assert flag_from_env({}, "X", True) is True
    assert flag_from_env({"X": "0"}, "X", True) is False
    with pytest.raises(CdlError, match="must be 1 or 0"):
        flag_from_env({"X": "perhaps"}, "X", True)


def test_time_budget_ends_training_and_stretches_the_poly_decay(trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("nnUNet_cdl_time_budget_min", "1")
    t = trainer()
    assert t.time_budget_s == 60.0 and t.max_num_epochs == 1000
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], 0.01)
    t.lr_scheduler = PolyLRScheduler(optimizer, 0.01, t.num_epochs)
    now = time.time()
    for epoch, start in enumerate((now - 25.0, now - 15.0, now - 5.0)):
        t.logger.log("epoch_start_timestamps", start, epoch)
        t.logger.log("epoch_end_timestamps", start + 4.0, epoch)
    t.fit_epochs_to_budget()
    assert t.num_epochs == 6 and t.lr_scheduler.max_steps == 6


def test_short_variants_skip_the_final_validation(trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    one = trainer(nnUNetTrainerLightUNet_1epoch)
    assert one.final_validation is False
    one.perform_actual_validation()
    assert "final validation skipped" in Path(one.log_file).read_text()
    assert trainer().final_validation is True
    monkeypatch.setenv("nnUNet_cdl_final_validation", "0")
    assert trainer().final_validation is False


def test_initial_weights_load_every_tensor_heads_included_and_refuse_another_network(tmp_path):
    from nnunet_cdl.training.light_unet import load_network_weights

    def network(classes: int) -> torch.nn.Module:
        torch.manual_seed(classes)
        net = torch.nn.Module()
        net.encoder = torch.nn.Conv3d(1, 4, 3)
        net.seg_layers = torch.nn.ModuleList([torch.nn.Conv3d(4, classes, 1)])  # what -pretrained_weights skips
        return net

    source = network(14)
    checkpoint = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": source.state_dict(), "trainer_name": "t", "init_args": {}}, checkpoint)
    target = network(13 + 1)
    torch.manual_seed(99)
    torch.nn.init.normal_(target.seg_layers[0].weight)
    assert load_network_weights(target, checkpoint) == 4
    assert torch.equal(target.seg_layers[0].weight, source.seg_layers[0].weight)
    with pytest.raises(CdlError, match="do not fit this network"):
        load_network_weights(network(5), checkpoint)

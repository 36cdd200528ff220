"""`nnunet-cdl predict` end to end on the session's tiny trained light U-Net: exact output geometry (flipped
direction, shifted origin), an image smaller than a patch, bad cases reported without stopping the others, records,
probabilities, the stock export path and the Python API."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.errors import CdlError


def write(path, array, spacing, origin=None, direction=None):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    if origin is not None:
        image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection([float(d) for d in direction])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return image


def assert_same_grid(output_file, image):
    out = sitk.ReadImage(str(output_file))
    assert out.GetSize() == image.GetSize()
    assert np.allclose(out.GetSpacing(), image.GetSpacing(), atol=1e-5)
    assert np.allclose(out.GetOrigin(), image.GetOrigin(), atol=1e-4)
    assert np.allclose(out.GetDirection(), image.GetDirection(), atol=1e-6)
    labels = sitk.GetArrayFromImage(out)
    assert labels.min() >= 0 and labels.max() <= 13
    return labels


@pytest.fixture(scope="module")
def inputs(trained_light_unet, tmp_path_factory):
    source = sorted((trained_light_unet.raw / trained_light_unet.dataset_name / "imagesTs").glob("*_0000.nii.gz"))[0]
    ct = sitk.ReadImage(str(source))
    folder = tmp_path_factory.mktemp("predict_in")
    array = sitk.GetArrayFromImage(ct)
    images = {
        "flipped": write(folder / "flipped_0000.nii.gz", array, ct.GetSpacing(), (120.5, -33.0, 410.0),
                         (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
        "tiny": write(folder / "tiny_0000.nii.gz", array[10:20, 40:100, 30:90].copy(), ct.GetSpacing(), (5, 6, 7)),
    }
    write(folder / "flat_0000.nii.gz", array[10], ct.GetSpacing()[:2])
    (folder / "broken_0000.nii.gz").write_bytes(b"not a nifti file")
    return folder, images


@pytest.mark.slow
def test_predict_cli_geometry_errors_records(trained_light_unet, inputs, tmp_path, capsys):
    folder, images = inputs
    out, record = tmp_path / "out", tmp_path / "record"
    argv = ["predict", "-i", str(folder), "-o", str(out), "-m", str(trained_light_unet.model_folder), "-f", "0",
            "--threads", "2", "--record", str(record), "--backend", "torch-fp32", "--disable_progress_bar",
            "-step_size", "0.6", "--grid", "coarse"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "2 of 4 case(s) failed: broken, flat" in err
    assert "flat_0000.nii.gz: expected a 3-D image" in err and "broken_0000.nii.gz" in err
    for case, image in images.items():
        assert_same_grid(out / f"{case}.nii.gz", image)
        data = json.loads((record / f"{case}.json").read_text())
        assert data["status"] == "ok" and data["windows"]["run"] >= 1 and data["windows"]["step_size"] == 0.6
        assert data["windows"]["grid"] == "coarse"
        slabs = data["windows"]["per_slab"]
        assert sum(s["windows_run"] for s in slabs) == data["windows"]["run"]
        assert [s["reason"] for s in slabs].count("foreground") == data["windows"]["slabs"].get("foreground", 0)
        assert all(1 <= int(k) <= 13 and n > 0 for s in slabs for k, n in s["located_voxels"].items())  # locate_first
        assert set(data["seconds"]) == {"reading", "preprocessing", "network", "exporting", "writing", "total"}
        assert data["peak_rss_mb"] > 0
    assert json.loads((record / "flat.json").read_text())["status"] == "failed"
    assert not (out / "flat.nii.gz").exists() and not (out / "broken.nii.gz").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files are left behind"
    # --continue_prediction skips the done cases: only the two bad ones are tried again
    assert cli_main([*argv, "--continue_prediction"]) == 2
    assert capsys.readouterr().err.count("FAILED") == 2


@pytest.mark.slow
def test_stock_export_with_probabilities(trained_light_unet, inputs, tmp_path):
    folder, images = inputs
    single = tmp_path / "single"
    single.mkdir()
    (single / "flipped_0000.nii.gz").write_bytes((folder / "flipped_0000.nii.gz").read_bytes())
    argv = ["predict", "-i", str(single), "-m", str(trained_light_unet.model_folder), "-f", "0", "--threads", "2",
            "--backend", "torch-fp32", "--disable_progress_bar", "--no-postprocess", "-o", str(tmp_path / "stock"),
            "--export", "stock", "--save_probabilities"]
    assert cli_main(argv) == 0
    stock = assert_same_grid(tmp_path / "stock" / "flipped.nii.gz", images["flipped"])
    probabilities = np.load(tmp_path / "stock" / "flipped.npz")["probabilities"]
    assert probabilities.shape == (14, *stock.shape)
    assert np.allclose(probabilities.sum(0), 1, atol=1e-2)
    assert np.array_equal(probabilities.argmax(0), stock)
    assert "spacing" in pickle.loads((tmp_path / "stock" / "flipped.pkl").read_bytes())


def sphere_logits(shape, center, radius) -> torch.Tensor:
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    distance = np.sqrt((zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2)
    logits = np.zeros((14, *shape), dtype=np.float32)
    logits[1] = radius - distance
    return torch.from_numpy(logits)


@pytest.mark.slow
def test_python_api_and_missing_checkpoint(trained_light_unet, inputs, tmp_path):
    from nnunet_cdl.inference.predictor import nnUNetCdlPredictor

    folder, images = inputs
    predictor = nnUNetCdlPredictor(device=torch.device("cpu"), use_mirroring=False)
    with pytest.raises(CdlError, match="checkpoint not found"):
        predictor.initialize_from_trained_model_folder(str(trained_light_unet.model_folder), (3,))
    predictor.initialize_from_trained_model_folder(str(trained_light_unet.model_folder), (0,))
    image = images["flipped"]
    array = sitk.GetArrayFromImage(image)[None].astype(np.float32)
    segmentation = predictor.predict_single_npy_array(array, {"spacing": list(image.GetSpacing())[::-1]})
    assert segmentation.shape == array.shape[1:]
    logits = predictor.predict_sliding_window_return_logits(torch.zeros((1, 20, 100, 100)))
    assert logits.shape == (14, 20, 100, 100), "smaller than the patch: padded, then cropped back"
    results = predictor.predict_from_files([[str(folder / "tiny_0000.nii.gz")]], None)
    assert results[0].shape == sitk.GetArrayFromImage(images["tiny"]).shape


@pytest.mark.slow
def test_fast_export_matches_stock_export(trained_light_unet):
    """Nearest-neighbour labels after argmax vs nnU-Net's resampling of logits: Dice of a sphere of radius 9 voxels
    >= 0.95 (0.970 measured); with the logits (in-plane linear, z nearest) the same labels as nnU-Net's."""
    from nnunet_cdl.inference.export import exports_inplane_linear, fast_labels, stock_labels
    from nnunet_cdl.inference.predictor import nnUNetCdlPredictor

    predictor = nnUNetCdlPredictor(device=torch.device("cpu"))
    predictor.initialize_from_trained_model_folder(str(trained_light_unet.model_folder), (0,))
    original = (40, 90, 110)
    properties = {"spacing": [2.5, 0.8, 0.8], "shape_before_cropping": original,
                  "bbox_used_for_cropping": [[0, s] for s in original],
                  "shape_after_cropping_and_before_resampling": original}
    logits = sphere_logits((25, 37, 45), (12, 18, 22), 9.0)
    fast = fast_labels(logits.argmax(0).numpy().astype(np.uint8), properties, predictor.plans_manager)
    stock, _ = stock_labels(logits, properties, predictor.plans_manager, predictor.configuration_manager,
                            predictor.label_manager, 2)
    assert fast.shape == stock.shape == original
    dice = 2 * np.logical_and(fast == 1, stock == 1).sum() / ((fast == 1).sum() + (stock == 1).sum())
    assert dice >= 0.95
    assert exports_inplane_linear(predictor.configuration_manager.configuration, properties["spacing"])
    linear = fast_labels(logits.argmax(0).numpy().astype(np.uint8), properties, predictor.plans_manager,
                         logits.numpy().astype(np.float16))
    assert float((linear == stock).mean()) >= 0.9999 > float((fast == stock).mean())

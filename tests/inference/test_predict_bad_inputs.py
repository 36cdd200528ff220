"""`nnunet-cdl predict` on bad input: each bad case fails alone with one line naming the file and the problem, the
good cases are still predicted, nothing partial is written, and the inputs keep their bytes and modes."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

import nnunet_cdl.inference.cli  # noqa: F401  (imported before a forked child drops privileges)
import nnunet_cdl.inference.predictor  # noqa: F401
from nnunet_cdl.cli import main as cli_main
from tests.conftest import give_to_unprivileged, run_unprivileged, shared_tmp


def write(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 4.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def zero_first_voxel_size(path: Path) -> None:
    """Set pixdim[1] (x voxel size) of a .nii.gz header to 0 (byte 80 of the NIfTI-1 header)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[80:84] = np.float32(0).tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def good_ct(trained_light_unet) -> sitk.Image:
    source = sorted((trained_light_unet.raw / trained_light_unet.dataset_name / "imagesTs").glob("*_0000.nii.gz"))[0]
    ct = sitk.ReadImage(str(source))
    return ct[:, :, 8:24]


def predict_argv(model: Path, inputs: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "-i", str(inputs), "-o", str(out), "-m", str(model), "-f", "0", "--threads", "2",
            "--backend", "torch-fp32", "--disable_progress_bar", *extra]


@pytest.mark.slow
def test_each_bad_case_fails_alone_and_the_good_one_is_written(trained_light_unet, good_ct, tmp_path, capsys):
    inputs, out, records = tmp_path / "in", tmp_path / "out", tmp_path / "records"
    inputs.mkdir()
    sitk.WriteImage(good_ct, str(inputs / "good_0000.nii.gz"))
    array = sitk.GetArrayFromImage(good_ct)
    spacing = good_ct.GetSpacing()
    shutil.copy(inputs / "good_0000.nii.gz", inputs / "nosuffix.nii.gz")
    whole = (inputs / "good_0000.nii.gz").read_bytes()
    (inputs / "truncated_0000.nii.gz").write_bytes(whole[: len(whole) // 2])
    affine = np.diag([*spacing, 1.0])
    nibabel.save(nibabel.Nifti1Image(np.full(array.shape[::-1], np.nan, np.float32), affine), inputs / "nan_0000.nii.gz")
    infinite = array.T.astype(np.float32)
    infinite[:8, :8] = np.inf
    nibabel.save(nibabel.Nifti1Image(infinite, affine), inputs / "inf_0000.nii.gz")
    write(inputs / "constant_0000.nii.gz", np.full(array.shape, -1000, np.int16), spacing)
    shutil.copy(inputs / "good_0000.nii.gz", inputs / "zerospacing_0000.nii.gz")
    zero_first_voxel_size(inputs / "zerospacing_0000.nii.gz")
    write(inputs / "needle_0000.nii.gz", np.zeros((32767, 1, 1), np.int16), (1.0, 1.0, 1.0))
    write(inputs / "labelmap_0000.nii.gz", (np.arange(array.size).reshape(array.shape) % 5).astype(np.uint8), spacing)
    (inputs / "extra_0001.nii.gz").write_bytes(whole)
    before = snapshot(inputs)

    code = cli_main(predict_argv(trained_light_unet.model_folder, inputs, out, "--record", str(records)))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    expected_failures = {
        "nosuffix": "nosuffix_0000.nii.gz", "truncated": "truncated", "nan": "NaN or infinite",
        "inf": "NaN or infinite", "constant": "same value", "zerospacing": "voxel size",
        "needle": "--allow-any-size", "extra": "expects [0]",
    }
    lines = {line.split(":")[0].split("] ")[-1]: line for line in err.splitlines() if "FAILED" in line}
    for case, message in expected_failures.items():
        assert case in lines and message in lines[case], (case, lines.get(case))
    assert f"{len(expected_failures)} of 10 case(s) failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "good.nii.gz", "labelmap.nii.gz", "plans.json"]
    labelmap = json.loads((records / "labelmap.json").read_text())
    assert labelmap["status"] == "ok" and "label map" in labelmap["warnings"][0]
    assert "WARNING" in next(line for line in err.splitlines() if "labelmap:" in line)
    assert snapshot(inputs) == before, "inputs must keep their bytes and modes"


@pytest.mark.slow
def test_folder_level_errors_write_nothing(trained_light_unet, good_ct, tmp_path, capsys):
    model = trained_light_unet.model_folder
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    assert cli_main(predict_argv(model, empty, out)) == 2
    err = capsys.readouterr().err.strip()
    assert "no input images" in err and len(err.splitlines()) == 1 and not out.exists()

    inputs = tmp_path / "in"
    inputs.mkdir()
    sitk.WriteImage(good_ct, str(inputs / "good_0000.nii.gz"))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert cli_main(predict_argv(model, inputs, a_file)) == 2
    err = capsys.readouterr().err.strip()
    assert "a_file: exists and is not a folder" in err and len(err.splitlines()) == 1 and a_file.read_text() == "x"

    broken_model = tmp_path / "model"
    shutil.copytree(model, broken_model, ignore=shutil.ignore_patterns("*.openvino"))
    checkpoint = broken_model / "fold_0" / "checkpoint_final.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert cli_main(predict_argv(broken_model, inputs, out)) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint_final.pth: not a readable PyTorch checkpoint" in err and len(err.splitlines()) == 1
    assert not out.exists()


def _predict_into_read_only_folder(argv: list[str]) -> int:
    return cli_main(argv)


@pytest.mark.slow
def test_read_only_output_folder_as_a_normal_user(trained_light_unet, good_ct, tmp_path, capfd):
    root = shared_tmp(tmp_path)
    inputs, out, model = root / "in", root / "out", root / "model"
    inputs.mkdir()
    out.mkdir()
    shutil.copytree(trained_light_unet.model_folder, model, ignore=shutil.ignore_patterns("*.openvino"))
    sitk.WriteImage(good_ct, str(inputs / "good_0000.nii.gz"))
    os.chmod(out, 0o555)
    give_to_unprivileged(root)
    code = run_unprivileged(_predict_into_read_only_folder, predict_argv(model, inputs, out))
    err = capfd.readouterr().err.strip()
    assert code == 2 and "is not writable" in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []
    if os.getuid() != 0:
        return  # an unreadable model folder needs a second user: root owning it
    os.chmod(model, 0o700)
    os.chown(model, 0, 0)
    code = run_unprivileged(_predict_into_read_only_folder, predict_argv(model, inputs, root / "out2"))
    err = capfd.readouterr().err.strip()
    assert code == 2 and "Permission denied" in err and str(model) in err and "Traceback" not in err, err

"""The torch-free OpenVINO command path (`inference.lean`): chosen only when the caches beside the checkpoint
serve the run, same outputs as the full predictor, torch never imported; everything else falls back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

LEAN_MODULES = ("nnunet_cdl.cli", "nnunet_cdl.inference.cli", "nnunet_cdl.inference.lean",
                "nnunet_cdl.inference.pipeline", "nnunet_cdl.inference.prediction", "nnunet_cdl.inference.runtime")


def test_the_command_path_modules_do_not_import_torch():
    code = (f"import sys; import {', '.join(LEAN_MODULES)}; "
            "loaded = [m for m in ('torch', 'nnunetv2.inference.predict_from_raw_data') if m in sys.modules]; "
            "print(loaded); sys.exit(1 if loaded else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"imported: {result.stdout} {result.stderr[-2000:]}"


@pytest.fixture()
def model(trained_light_unet, tmp_path):
    """A writable copy of the session's tiny model (the caches go beside its checkpoint)."""
    folder = tmp_path / "model"
    shutil.copytree(trained_light_unet.model_folder, folder,
                    ignore=shutil.ignore_patterns("*.openvino", "*.openvino-int8", "*.backend.json", "*.runtime.json"))
    return folder


@pytest.fixture()
def case_folder(trained_light_unet, tmp_path):
    source = sorted((trained_light_unet.raw / trained_light_unet.dataset_name / "imagesTs").glob("*_0000.nii.gz"))[0]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(source, folder / source.name)
    return folder


def predict_in_subprocess(model, case_folder, out, record, *flags):
    """`nnunet-cdl predict` in a fresh interpreter; returns (exit code, stderr, the heavy packages it imported:
    torch, and scikit-image, which only nnU-Net's reader registry pulls in)."""
    argv = ["predict", "-i", str(case_folder), "-o", str(out), "-m", str(model), "-f", "0", "--threads", "2",
            "--record", str(record), "--disable_progress_bar", *flags]
    code = ("import sys; from nnunet_cdl.cli import main; rc = main(sys.argv[1:]); "
            "print('LOADED', *[m for m in ('torch', 'skimage') if m in sys.modules]); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    loaded = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("LOADED")]
    return result.returncode, result.stderr, set(loaded[-1]) if loaded else set()


def only_record(folder):
    (path,) = folder.glob("*.json")
    return json.loads(path.read_text())


def labels(folder):
    (path,) = folder.glob("*.nii.gz")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.mark.slow
def test_second_run_is_torch_free_and_identical(model, case_folder, tmp_path):
    first = predict_in_subprocess(model, case_folder, tmp_path / "o1", tmp_path / "r1", "--backend", "openvino-fp32")
    assert first[0] == 0, first[1][-3000:]
    assert "torch" in first[2] and only_record(tmp_path / "r1")["predictor"] == "nnUNetCdlPredictor"
    assert (model / "fold_0" / "checkpoint_final.pth.runtime.json").is_file()
    second = predict_in_subprocess(model, case_folder, tmp_path / "o2", tmp_path / "r2", "--backend", "openvino-fp32")
    assert second[0] == 0, second[1][-3000:]
    record = only_record(tmp_path / "r2")
    assert not second[2], f"the cached OpenVINO path must not import {second[2]}"
    assert record["predictor"] == "LeanPredictor" and record["backend"] == "openvino-fp32"
    assert record["first_window_after_start_s"] is not None and record["first_window_after_start_s"] > 0
    assert np.array_equal(labels(tmp_path / "o1"), labels(tmp_path / "o2"))
    assert only_record(tmp_path / "r1")["windows"] == record["windows"]
    for name in ("dataset.json", "plans.json"):
        assert (tmp_path / "o2" / name).read_text() == (tmp_path / "o1" / name).read_text()


@pytest.mark.slow
def test_runs_the_caches_do_not_serve_go_to_the_full_predictor(model, case_folder, tmp_path):
    def predictor_of(tag, *flags):
        code, err, _ = predict_in_subprocess(model, case_folder, tmp_path / f"o{tag}", tmp_path / f"r{tag}", *flags)
        assert code == 0, err[-3000:]
        return only_record(tmp_path / f"r{tag}")["predictor"]

    assert predictor_of("a", "--backend", "auto") == "nnUNetCdlPredictor"  # measures and keeps the choice
    choice = json.loads((model / "fold_0" / "checkpoint_final.pth.backend.json").read_text())["choice"]
    expected = "LeanPredictor" if choice.startswith("openvino") else "nnUNetCdlPredictor"
    assert predictor_of("b", "--backend", "auto") == expected
    assert predictor_of("c", "--backend", "torch-fp32") == "nnUNetCdlPredictor"
    assert predictor_of("d", "--backend", "openvino-fp32", "--save_probabilities") == "nnUNetCdlPredictor"
    assert predictor_of("e", "--backend", "openvino-fp32", "--export", "stock") == "nnUNetCdlPredictor"
    info = model / "fold_0" / "checkpoint_final.pth.runtime.json"
    stale = json.loads(info.read_text())
    stale["checkpoint"]["sha256"] = "0" * 64
    info.write_text(json.dumps(stale))
    assert predictor_of("f", "--backend", "openvino-fp32") == "nnUNetCdlPredictor"  # and writes it again
    assert json.loads(info.read_text())["checkpoint"]["sha256"] != "0" * 64
    assert predictor_of("g", "--backend", "openvino-fp32") == "LeanPredictor"
    assert predictor_of("h", "--backend", "openvino-fp32", "--full-predictor") == "nnUNetCdlPredictor"


"""How stock nnU-Net finds our trainers: nnUNet_extTrainer, `nnunet-cdl env`, lookup errors."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_cdl import nnunet_env
from nnunet_cdl.errors import CdlError

OURS = str(nnunet_env.ext_trainer_dir())


def run_env(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunet_cdl.cli", "env", *args], capture_output=True, text=True,
                          env=environ)


def test_value_appends_without_clobbering_or_duplicating() -> None:
    assert nnunet_env.ext_trainer_value(None) == OURS
    assert nnunet_env.ext_trainer_value(f"/user/trainers{os.pathsep}") == f"/user/trainers{os.pathsep}{OURS}"
    twice = nnunet_env.ext_trainer_value(nnunet_env.ext_trainer_value("/a"))
    assert twice == f"/a{os.pathsep}{OURS}"
    environ = {"nnUNet_extTrainer": "/a"}
    nnunet_env.ensure_nnunet_env(environ)
    assert environ["nnUNet_extTrainer"] == f"/a{os.pathsep}{OURS}" and nnunet_env.is_configured(environ)


def test_eval_of_env_output_sets_the_variable() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    environ["nnUNet_extTrainer"] = "/user/trainers"
    script = f'eval "$({sys.executable} -m nnunet_cdl.cli env)"; printf %s "$nnUNet_extTrainer"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=environ, check=True)
    assert result.stdout == f"/user/trainers{os.pathsep}{OURS}"


def test_env_check_names_the_fix_when_missing() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    result = run_env("--check", environ=environ)
    assert result.returncode == 2
    assert 'eval "$(nnunet-cdl env)"' in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(CdlError, match="nnunet-cdl env"):
        nnunet_env.check_stock_environment("nnUNetTrainerLightUNet", environ)
    nnunet_env.check_stock_environment("nnUNetTrainer", environ)  # a stock trainer needs nothing


def test_ext_folder_is_one_importable_file_with_absolute_imports() -> None:
    files = nnunet_env.ext_trainer_files()
    assert [f.name for f in files] == sorted(f.name for f in nnunet_env.ext_trainer_dir().glob("*.py"))
    assert len(files) == 1
    path = files[0]
    assert importlib.util.find_spec(path.stem) is None  # nnU-Net would skip a file shadowing a module
    tree = ast.parse(path.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imports and all(node.level == 0 and node.module.startswith("nnunet_cdl.") for node in imports)


def test_nnunet_lookup_returns_the_canonical_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    trainer = nnunet_env.resolve_trainer("nnUNetTrainerLightUNet_1epoch")
    from nnunet_cdl.training.light_unet import nnUNetTrainerLightUNet_1epoch

    assert trainer is nnUNetTrainerLightUNet_1epoch
    assert "nnUNetTrainerLightUNet" in nnunet_env.our_trainer_names()
    with pytest.raises(CdlError, match="did you mean nnUNetTrainerLightUNet"):
        nnunet_env.resolve_trainer("nnUNetTrainerLightUnet")


def test_missing_plans_lists_the_existing_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "Dataset961_X"
    folder.mkdir()
    (folder / "nnUNetPlans.json").write_text("{}")
    (folder / "dataset.json").write_text("{}")
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert nnunet_env.require_plans("Dataset961_X", "nnUNetPlans") == folder / "nnUNetPlans.json"
    with pytest.raises(CdlError, match=r"plans 'nnUNetPlansLightUNet' not found \(plans of Dataset961_X: "
                                       r"nnUNetPlans\).*nnunet-cdl plan"):
        nnunet_env.require_plans("Dataset961_X", "nnUNetPlansLightUNet")


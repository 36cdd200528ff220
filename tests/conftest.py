"""Shared fixtures: everything runs on synthetic phantoms in temporary folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

# Keep tests on the CPU and predictable on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("nnUNet_n_proc_DA", "0")


UNPRIVILEGED_UID = 65534
"""`nobody`: permission bits bind it, unlike root."""


def run_unprivileged(function, *args) -> int:
    """Run `function(*args)` (returning an exit code) as a user that permission bits bind, return its code.

    As root, in a forked child that drops to `nobody` (the interpreter outside the venv may be unreadable to
    that user, so everything the function needs must be imported before the call); as any other user, directly.
    Output goes to the inherited file descriptors: read it with `capfd`.
    """
    if os.getuid() != 0:
        return function(*args)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            os.setgid(UNPRIVILEGED_UID)
            os.setuid(UNPRIVILEGED_UID)
            code = function(*args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def shared_tmp(tmp_path: Path) -> Path:
    """A folder below `tmp_path` that the unprivileged user can reach and write (pytest's base is 0700)."""
    folder = Path(tmp_path) / "shared"
    folder.mkdir(exist_ok=True)
    for parent in [folder, *folder.parents]:
        if parent == Path("/tmp") or parent == Path(parent.anchor):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o711)
    os.chmod(folder, 0o777)
    return folder


def give_to_unprivileged(path: Path) -> None:
    """As root, make `path` (recursively) belong to the unprivileged user, as a user's own files would."""
    if os.getuid() != 0:
        return
    for item in [path, *Path(path).rglob("*")]:
        os.chown(item, UNPRIVILEGED_UID, UNPRIVILEGED_UID, follow_symlinks=False)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DatasetNNN folder of a small-preset phantom dataset: id 501, 6 training + 2 test cases, 3 sources, seed 0.

    Shared by the whole session: read it, never modify it (copy it first).
    """
    from nnunet_cdl.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synth_raw"), 501, 6, num_test=2, preset="small", seed=0)


@dataclass(frozen=True)
class TrainedLightUNet:
    """A light U-Net trained by stock `nnUNetv2_train` on a copy of `small_dataset` (see `trained_light_unet`)."""

    dataset_id: int
    dataset_name: str
    raw: Path
    preprocessed: Path
    results: Path
    model_folder: Path
    trainer: str
    plans: str
    configuration: str
    fold: int
    env: dict[str, str]
    """Environment for subprocesses: nnU-Net paths, `eval "$(nnunet-cdl env)"`, 1 process, 2 threads."""


def _env_after_eval(base: dict[str, str]) -> dict[str, str]:
    """`base` after `eval "$(nnunet-cdl env)"` in bash: the set-up the docs tell users to run."""
    script = f'eval "$({sys.executable} -m nnunet_cdl.cli env)" && {sys.executable} -c ' \
        '"import json, os; print(json.dumps(dict(os.environ)))"'
    result = subprocess.run(["bash", "-c", script], env=base, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _run(command: list[str], env: dict[str, str], timeout: int = 600) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def trained_light_unet(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedLightUNet:
    """`nnunet-cdl plan` (LightUNetPlanner) + stock `nnUNetv2_train ... -tr nnUNetTrainerLightUNet_1epoch -device cpu`.

    Fold 0 (5 training cases, 1 validation case) of `small_dataset` (copied); 1 epoch of 2 training and 1 validation
    iterations (environment override). The preset keeps the paper's patch 32x128x192 but plans at 4 x 2.4 x 2.4 mm
    (z, y, x) so that validation and prediction take seconds. About 2-3 minutes on 2 idle cores. Read-only for users.
    """
    root = tmp_path_factory.mktemp("light_unet")
    raw, preprocessed, results = root / "nnUNet_raw", root / "nnUNet_preprocessed", root / "nnUNet_results"
    raw.mkdir()
    shutil.copytree(small_dataset, raw / small_dataset.name)
    dataset_id = int(small_dataset.name[len("Dataset"):len("Dataset") + 3])
    preset = root / "light_unet_test_preset.json"
    preset.write_text(json.dumps({"target_spacing": [4.0, 2.4, 2.4]}))
    base = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    base.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(results),
                nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1", OMP_NUM_THREADS="2")
    env = _env_after_eval(base)
    trainer, plans, configuration, fold = "nnUNetTrainerLightUNet_1epoch", "nnUNetPlansLightUNet", "3d_fullres", 0
    _run([sys.executable, "-m", "nnunet_cdl.cli", "plan", "-d", str(dataset_id), "-c", configuration, "-np", "1",
          "-npfp", "1", "--preset", str(preset), "--no_pbar"], env)
    images = sorted((raw / small_dataset.name / "imagesTr").glob("*_0000.nii.gz"))
    cases = [image.name[: -len("_0000.nii.gz")] for image in images]
    splits = [{"train": cases[:-1], "val": cases[-1:]}]  # one validation case keeps the final validation short
    (preprocessed / small_dataset.name / "splits_final.json").write_text(json.dumps(splits))
    train_env = {**env, "nnUNet_cdl_num_iterations_per_epoch": "2", "nnUNet_cdl_num_val_iterations_per_epoch": "1",
                 "nnUNet_cdl_final_validation": "1"}  # the short variant skips it; the tests check the stock path
    _run([str(Path(sys.executable).with_name("nnUNetv2_train")), str(dataset_id), configuration, str(fold),
          "-tr", trainer, "-p", plans, "-device", "cpu"], train_env)
    model_folder = results / small_dataset.name / f"{trainer}__{plans}__{configuration}"
    return TrainedLightUNet(dataset_id, small_dataset.name, raw, preprocessed, results, model_folder, trainer, plans,
                            configuration, fold, env)

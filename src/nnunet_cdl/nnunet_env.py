"""How stock nnU-Net commands find nnunet-cdl's trainers: the `nnUNet_extTrainer` environment variable.

nnU-Net 2.8 looks up `-tr NAME` in its own trainer folder, then in every folder listed in `nnUNet_extTrainer`
(os.pathsep-separated). nnunet-cdl ships one such folder, `training/nnunet_ext/`, holding a single re-export file.
Our own commands call `ensure_nnunet_env()`; shells need `eval "$(nnunet-cdl env)"` once (or the export line in
their profile) before `nnUNetv2_train` / `nnUNetv2_predict` with our trainers.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import inspect
import os
import shlex
from collections.abc import MutableMapping
from pathlib import Path

from nnunet_cdl.errors import CdlError

EXT_TRAINER_VARIABLE = "nnUNet_extTrainer"
PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
FIX = 'run `eval "$(nnunet-cdl env)"` in this shell (or add its export line to your shell profile)'


def ext_trainer_dir() -> Path:
    """The folder nnUNet_extTrainer must list: it holds nnunet-cdl's trainer re-export file."""
    return Path(__file__).resolve().parent / "training" / "nnunet_ext"


def _entries(value: str | None) -> list[str]:
    return [entry for entry in (value or "").split(os.pathsep) if entry.strip()]


def is_configured(environ: MutableMapping[str, str] | None = None) -> bool:
    """True when nnUNet_extTrainer lists our trainer folder."""
    environ = os.environ if environ is None else environ
    ours = ext_trainer_dir()
    return any(Path(entry).resolve() == ours for entry in _entries(environ.get(EXT_TRAINER_VARIABLE)))


def ext_trainer_value(current: str | None) -> str:
    """`current` nnUNet_extTrainer value with our folder appended (unchanged when already listed)."""
    entries = _entries(current)
    ours = ext_trainer_dir()
    if not any(Path(entry).resolve() == ours for entry in entries):
        entries.append(str(ours))
    return os.pathsep.join(entries)


def ensure_nnunet_env(environ: MutableMapping[str, str] | None = None) -> None:
    """Append our trainer folder to nnUNet_extTrainer in this process (a user's folders stay first)."""
    environ = os.environ if environ is None else environ
    environ[EXT_TRAINER_VARIABLE] = ext_trainer_value(environ.get(EXT_TRAINER_VARIABLE))


def env_exports(environ: MutableMapping[str, str] | None = None) -> str:
    """Shell lines for `eval "$(nnunet-cdl env)"`: the export, and comments for unset nnU-Net paths."""
    environ = os.environ if environ is None else environ
    value = ext_trainer_value(environ.get(EXT_TRAINER_VARIABLE))
    lines = [f"export {EXT_TRAINER_VARIABLE}={shlex.quote(value)}"]
    for name in PATH_VARIABLES:
        if not environ.get(name):
            lines.append(f"# {name} is not set: export {name}=/path/to/{name}")
    return "\n".join(lines)


def ext_trainer_files() -> list[Path]:
    """The re-export files nnU-Net imports from our folder."""
    return sorted(p for p in ext_trainer_dir().glob("*.py") if not p.name.startswith("_"))


def our_trainer_names() -> list[str]:
    """Names of the nnU-Net trainer classes our folder exposes (imports them, hence nnU-Net and torch)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    names: set[str] = set()
    for path in ext_trainer_files():
        spec = importlib.util.spec_from_file_location(f"_nnunet_cdl_ext_{path.stem}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names |= {n for n, obj in vars(module).items() if inspect.isclass(obj) and issubclass(obj, nnUNetTrainer)}
    return sorted(names)


def missing_env_message(trainer_name: str) -> str:
    return (
        f"nnU-Net cannot find trainer {trainer_name!r}: {EXT_TRAINER_VARIABLE} does not list nnunet-cdl's trainer "
        f"folder {ext_trainer_dir()}; {FIX}"
    )


def check_stock_environment(trainer_name: str, environ: MutableMapping[str, str] | None = None) -> None:
    """`CdlError` when a stock nnU-Net command in `environ` would not find our trainer `trainer_name`."""
    if not is_configured(environ) and trainer_name in our_trainer_names():
        raise CdlError(missing_env_message(trainer_name))


def resolve_trainer(trainer_name: str) -> type:
    """The trainer class nnU-Net's own lookup returns for `trainer_name` (after `ensure_nnunet_env`).

    A name that nnU-Net cannot find is a `CdlError` with close matches among our and nnU-Net's trainer names.
    """
    ensure_nnunet_env()
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(trainer_name)
    except RuntimeError as exc:
        known = our_trainer_names()
        close = difflib.get_close_matches(trainer_name, known + _stock_trainer_names(), n=3, cutoff=0.75)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise CdlError(
            f"unknown nnU-Net trainer {trainer_name!r}: {hint}nnunet-cdl's trainers: {', '.join(known)} "
            "(nnU-Net's own live in nnunetv2/training/nnUNetTrainer)"
        ) from exc


def _stock_trainer_names() -> list[str]:
    import sys

    return sorted({
        name
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("nnunetv2.training.nnUNetTrainer") and module is not None
        for name in dir(module)
        if name.startswith("nnUNetTrainer")
    })


def require_plans(dataset_name_or_id: str | int, plans_name: str) -> Path:
    """Path of `<nnUNet_preprocessed>/<dataset>/<plans_name>.json`; a `CdlError` lists the plans that exist."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    preprocessed = os.environ.get("nnUNet_preprocessed")
    if not preprocessed:
        raise CdlError("nnUNet_preprocessed is not set: export nnUNet_preprocessed=/path/to/nnUNet_preprocessed")
    try:
        dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    except RuntimeError as exc:
        raise CdlError(f"dataset {dataset_name_or_id!r} not found in nnUNet_raw/nnUNet_preprocessed ({exc})") from exc
    folder = Path(preprocessed) / dataset_name
    plans_file = folder / f"{plans_name}.json"
    if not plans_file.is_file():
        available = sorted(p.stem for p in folder.glob("*.json") if p.stem not in ("dataset", "dataset_fingerprint",
                                                                                     "splits_final"))
        listed = ", ".join(available) if available else "none"
        raise CdlError(
            f"{plans_file}: plans {plans_name!r} not found (plans of {dataset_name}: {listed}); create them with "
            f"`nnunet-cdl plan -d {dataset_name_or_id}` (LightUNetPlanner writes nnUNetPlansLightUNet) or pass an "
            "existing name with -p"
        )
    return plans_file


def main(argv: list[str], prog: str) -> int:
    """`nnunet-cdl env`: print export lines for `eval "$(nnunet-cdl env)"`, or check this shell with --check."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Print the environment stock nnU-Net commands need to find nnunet-cdl\'s trainers. '
        'Use: eval "$(nnunet-cdl env)"',
    )
    parser.add_argument(
        "--check", action="store_true",
        help="check this shell instead: exit 2 with the fix when nnU-Net would not find nnunet-cdl's trainers",
    )
    args = parser.parse_args(argv)
    if not args.check:
        print(env_exports())
        return 0
    if not is_configured():
        raise CdlError(f"{EXT_TRAINER_VARIABLE} does not list {ext_trainer_dir()}; {FIX}")
    names = our_trainer_names()
    print(f"{EXT_TRAINER_VARIABLE} lists {ext_trainer_dir()}; nnU-Net finds: {', '.join(names)}")
    for name in PATH_VARIABLES:
        print(f"{name}={os.environ.get(name, '(not set)')}")
    return 0

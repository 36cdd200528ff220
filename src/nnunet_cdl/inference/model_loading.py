"""Loading a trained model folder as nnU-Net does, with a fast trainer lookup.

nnU-Net's `recursive_find_trainer_class_by_name` imports its whole trainer tree (~3.4 s per process) before
it looks at `nnUNet_extTrainer`. The stock trainer and nnunet-cdl's trainers (the re-export file nnU-Net's
lookup would find) are resolved directly; any other name falls back to nnU-Net's search. Trainers that keep
nnUNetTrainer's `build_network_architecture` (`DEFAULT_NETWORK_TRAINERS`) are not imported at all: their network
comes from the plans as nnUNetTrainer builds it, which saves importing nnUNetTrainer (~0.9 s: its logger imports
seaborn).
"""

from __future__ import annotations

import importlib.util
import inspect
from functools import lru_cache
from pathlib import Path

import torch
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json
from nnunet_cdl.nnunet_env import ensure_nnunet_env, ext_trainer_dir


DEFAULT_NETWORK_TRAINERS: frozenset[str] = frozenset({
    "nnUNetTrainer",
    "nnUNetTrainerLightUNet", "nnUNetTrainerLightUNet_1epoch", "nnUNetTrainerLightUNet_5epochs",
    "nnUNetTrainerLightUNet_50epochs", "nnUNetTrainerLightUNet_Adam1en3", "nnUNetTrainerLightUNet_Adam3en4",
    "nnUNetTrainerCDL", "nnUNetTrainerCDL_5epochs", "nnUNetTrainerCDL_50epochs",
    "nnUNetTrainerSwinXSeg", "nnUNetTrainerSwinXSeg_1epoch", "nnUNetTrainerSwinXSeg_5epochs",
    "nnUNetTrainerSwinXSeg_100epochs",
})
"""Trainer names whose `build_network_architecture` is nnUNetTrainer's own (tests check each against its class)."""


@lru_cache(maxsize=1)
def _our_trainers() -> dict[str, type]:
    classes: dict[str, type] = {}
    for path in sorted(ext_trainer_dir().glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_nnunet_cdl_lookup_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        classes.update({name: obj for name, obj in vars(module).items() if inspect.isclass(obj)})
    return classes


def find_trainer_class(name: str) -> type:
    """The trainer class called `name`: nnU-Net's base trainer, one of ours, or nnU-Net's search."""
    if name == "nnUNetTrainer":
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        return nnUNetTrainer
    ours = _our_trainers()
    if name in ours:
        return ours[name]
    ensure_nnunet_env()
    found = recursive_find_trainer_class_by_name(name)
    if found is None:
        raise CdlError(f"trainer class {name!r} not found (in nnU-Net, nnunet-cdl or nnUNet_extTrainer)")
    return found


def _numpy_checkpoint_globals() -> list:
    """The numpy objects nnU-Net's checkpoints pickle (scalars and dtypes in the training log), under their
    numpy 2 and numpy 1 names: allowed in `torch.load(weights_only=True)`, which refuses everything else."""
    import numpy as np

    scalar = np.dtype("f4").type(0).__reduce__()[0]
    dtypes = [type(np.dtype(code)) for code in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


CHECKPOINT_KEYS_NEEDED = ("network_weights", "trainer_name", "init_args")


def read_checkpoint(path: str | Path) -> dict:
    """An nnU-Net checkpoint loaded with `weights_only=True` (tensors, plain Python, numpy scalars; no code runs),
    or a `CdlError` naming the file when it is missing, truncated, not a checkpoint or lacks what nnU-Net needs."""
    path = Path(path)
    if not path.is_file():
        raise CdlError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_checkpoint_globals()):
            checkpoint = torch.load(path, map_location=torch.device("cpu"), weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... on damaged files
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CdlError(f"{path}: not a readable PyTorch checkpoint (truncated or damaged?): {reason[:300]}") from exc
    missing = [key for key in CHECKPOINT_KEYS_NEEDED if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CdlError(f"{path}: not an nnU-Net checkpoint (missing {', '.join(missing)})")
    return checkpoint


def load_model_folder(folder: Path, checkpoints: list[Path]) -> dict:
    """Everything `nnUNetPredictor.initialize_from_trained_model_folder` sets, as a dict of its attribute names."""
    dataset_json = read_json(folder / "dataset.json")
    plans_manager = PlansManager(read_json(folder / "plans.json"))
    parameters = []
    for index, path in enumerate(checkpoints):
        checkpoint = read_checkpoint(path)
        if index == 0:
            trainer_name = checkpoint["trainer_name"]
            configuration_name = checkpoint["init_args"]["configuration"]
            mirroring = checkpoint.get("inference_allowed_mirroring_axes")
        parameters.append(checkpoint["network_weights"])
    configuration_manager = plans_manager.get_configuration(configuration_name)
    channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    label_manager = plans_manager.get_label_manager(dataset_json)
    network = build_network(trainer_name, plans_manager, configuration_manager, channels,
                            label_manager.num_segmentation_heads)
    network.load_state_dict(parameters[0])
    return {
        "plans_manager": plans_manager, "configuration_manager": configuration_manager,
        "list_of_parameters": parameters, "network": network, "dataset_json": dataset_json,
        "trainer_name": trainer_name, "allowed_mirroring_axes": mirroring, "label_manager": label_manager,
        "configuration_name": configuration_name,
    }


def build_network(trainer_name: str, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                  channels: int, outputs: int) -> torch.nn.Module:
    """The trainer's inference network (no deep supervision), built as `trainer_name`'s class builds it."""
    if trainer_name in DEFAULT_NETWORK_TRAINERS:
        return get_network_from_plans(
            configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import, channels, outputs, allow_init=True,
            deep_supervision=False,
        )
    trainer_class = find_trainer_class(trainer_name)
    if "plans_manager" in inspect.signature(trainer_class.build_network_architecture).parameters:
        return trainer_class.build_network_architecture(
            plans_manager, configuration_manager, channels, outputs, enable_deep_supervision=False,
        )
    return trainer_class.build_network_architecture(
        configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
        configuration_manager.network_arch_init_kwargs_req_import, channels, outputs,
        enable_deep_supervision=False,
    )

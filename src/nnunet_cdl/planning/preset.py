"""Planner presets: every value of a fixed-architecture plan, read from a JSON file in `configs/`.

A preset file may hold a subset of the keys; the others come from the shipped default (`configs/light_unet.json`),
so `{"patch_size": [48, 128, 128]}` is a complete override. Unknown keys are an error (they are typos).
Axes are the image's numpy axes (z, y, x); spacing is in mm.
"""

from __future__ import annotations

import json
import pydoc
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json_object

DEFAULT_PRESET = "light_unet.json"

NORM_ALIASES = {
    "instance": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "batch": "torch.nn.modules.batchnorm.BatchNorm3d",
}
NONLIN_ALIASES = {
    "leaky_relu": "torch.nn.modules.activation.LeakyReLU",
    "relu": "torch.nn.modules.activation.ReLU",
    "gelu": "torch.nn.modules.activation.GELU",
}
CONV_OP_3D = "torch.nn.modules.conv.Conv3d"


@dataclass(frozen=True)
class PlannerPreset:
    """All values a fixed-architecture 3d_fullres plan needs (see configs/light_unet.json)."""

    plans_name: str
    target_spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    batch_size: int
    network_class: str
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, int, int], ...]
    strides: tuple[tuple[int, int, int], ...]
    n_conv_per_stage: tuple[int, ...]
    n_conv_per_stage_decoder: tuple[int, ...]
    conv_bias: bool
    norm: str
    norm_kwargs: dict[str, Any]
    nonlin: str
    nonlin_kwargs: dict[str, Any]
    batch_dice: bool
    reorient_to_ras: bool
    """Read NIfTI datasets with nnU-Net's `NibabelIOWithReorient` (every image and label in RAS order)."""
    ct_window_hu: tuple[float, float] | None
    """A fixed [lower, upper] HU window for CT channels (mapped to [0, 1] by stock `CTNormalization`), or None for
    nnU-Net's window from the dataset's foreground percentiles."""

    @property
    def n_stages(self) -> int:
        return len(self.features_per_stage)

    @property
    def norm_op(self) -> str:
        """Dotted class path of the normalisation layer."""
        return NORM_ALIASES.get(self.norm, self.norm)

    @property
    def nonlin_op(self) -> str:
        """Dotted class path of the non-linearity."""
        return NONLIN_ALIASES.get(self.nonlin, self.nonlin)

    def architecture(self) -> dict[str, Any]:
        """The plans' `architecture` section, in nnU-Net's format (classes by dotted path)."""
        return {
            "network_class_name": self.network_class,
            "arch_kwargs": {
                "n_stages": self.n_stages,
                "features_per_stage": list(self.features_per_stage),
                "conv_op": CONV_OP_3D,
                "kernel_sizes": [list(k) for k in self.kernel_sizes],
                "strides": [list(s) for s in self.strides],
                "n_conv_per_stage": list(self.n_conv_per_stage),
                "n_conv_per_stage_decoder": list(self.n_conv_per_stage_decoder),
                "conv_bias": self.conv_bias,
                "norm_op": self.norm_op,
                "norm_op_kwargs": dict(self.norm_kwargs),
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": self.nonlin_op,
                "nonlin_kwargs": dict(self.nonlin_kwargs),
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        }

    def with_overrides(self, **values: Any) -> PlannerPreset:
        """A copy with some values replaced, validated like a file."""
        merged = json.loads(json.dumps({**asdict(self), **values}))
        return preset_from_dict(merged, source="overrides")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def default_preset_path() -> Path:
    """The shipped default preset (inside the installed package)."""
    return Path(str(resources.files("nnunet_cdl") / "configs" / DEFAULT_PRESET))


def load_preset(path: str | Path | None = None) -> PlannerPreset:
    """Read a preset; keys missing from `path` are taken from the shipped default. None: the default alone."""
    values = read_json_object(default_preset_path(), "a preset of planner values")
    if path is not None:
        override = read_json_object(path, "a preset of planner values")
        unknown = sorted(set(override) - {f.name for f in fields(PlannerPreset)})
        if unknown:
            known = ", ".join(f.name for f in fields(PlannerPreset))
            raise CdlError(f"{path}: unknown preset key(s) {', '.join(unknown)}; known keys: {known}")
        values.update(override)
    return preset_from_dict(values, source=str(path or default_preset_path()))


def _int_list(value: Any, name: str, source: str, length: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CdlError(f"{source}: {name} must be a list of integers, got {value!r}")
    if length is not None and len(value) != length:
        raise CdlError(f"{source}: {name} must have {length} entries, got {len(value)}")
    if any(v < 1 for v in value):
        raise CdlError(f"{source}: {name} entries must be >= 1, got {value!r}")
    return tuple(value)


def _window(value: Any, source: str) -> tuple[float, float] | None:
    """`ct_window_hu`: null, or [lower, upper] HU with lower < upper."""
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) or value[0] >= value[1]):
        raise CdlError(f"{source}: ct_window_hu must be null or [lower, upper] HU with lower < upper, got {value!r}")
    return float(value[0]), float(value[1])


def _locatable(dotted: str, name: str, source: str) -> None:
    if pydoc.locate(dotted) is None:
        raise CdlError(f"{source}: {name} {dotted!r} is neither a known alias nor an importable class")


def preset_from_dict(values: dict[str, Any], source: str) -> PlannerPreset:
    """Validate raw preset values; every problem is a `CdlError` naming `source` and the key."""
    missing = sorted({f.name for f in fields(PlannerPreset)} - set(values))
    if missing:
        raise CdlError(f"{source}: missing preset key(s) {', '.join(missing)}")
    spacing = values["target_spacing"]
    if (
        not isinstance(spacing, list)
        or len(spacing) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in spacing)
    ):
        raise CdlError(f"{source}: target_spacing must be 3 positive numbers (z, y, x) in mm, got {spacing!r}")
    patch = _int_list(values["patch_size"], "patch_size", source, 3)
    features = _int_list(values["features_per_stage"], "features_per_stage", source)
    n_stages = len(features)
    if not isinstance(values["kernel_sizes"], list) or len(values["kernel_sizes"]) != n_stages:
        raise CdlError(f"{source}: kernel_sizes needs one [z, y, x] kernel per stage ({n_stages} stages)")
    if not isinstance(values["strides"], list) or len(values["strides"]) != n_stages:
        raise CdlError(f"{source}: strides needs one [z, y, x] stride per stage ({n_stages} stages)")
    kernels = tuple(_int_list(k, f"kernel_sizes[{i}]", source, 3) for i, k in enumerate(values["kernel_sizes"]))
    strides = tuple(_int_list(s, f"strides[{i}]", source, 3) for i, s in enumerate(values["strides"]))
    divisor = np.prod(np.array(strides), axis=0)
    if any(p % d for p, d in zip(patch, divisor)):
        raise CdlError(
            f"{source}: patch_size {list(patch)} must be divisible by the product of the strides {divisor.tolist()} "
            "on every axis"
        )
    n_conv = _int_list(values["n_conv_per_stage"], "n_conv_per_stage", source, n_stages)
    n_conv_dec = _int_list(values["n_conv_per_stage_decoder"], "n_conv_per_stage_decoder", source, n_stages - 1)
    batch_size = values["batch_size"]
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CdlError(f"{source}: batch_size must be a positive integer, got {batch_size!r}")
    for key in ("plans_name", "network_class", "norm", "nonlin"):
        if not isinstance(values[key], str) or not values[key]:
            raise CdlError(f"{source}: {key} must be a non-empty string")
    for key in ("norm_kwargs", "nonlin_kwargs"):
        if not isinstance(values[key], dict):
            raise CdlError(f"{source}: {key} must be a JSON object")
    for key in ("conv_bias", "batch_dice", "reorient_to_ras"):
        if not isinstance(values[key], bool):
            raise CdlError(f"{source}: {key} must be true or false")
    preset = PlannerPreset(
        plans_name=values["plans_name"],
        target_spacing=tuple(float(v) for v in spacing),
        patch_size=patch,
        batch_size=batch_size,
        network_class=values["network_class"],
        features_per_stage=features,
        kernel_sizes=kernels,
        strides=strides,
        n_conv_per_stage=n_conv,
        n_conv_per_stage_decoder=n_conv_dec,
        conv_bias=values["conv_bias"],
        norm=values["norm"],
        norm_kwargs=dict(values["norm_kwargs"]),
        nonlin=values["nonlin"],
        nonlin_kwargs=dict(values["nonlin_kwargs"]),
        batch_dice=values["batch_dice"],
        reorient_to_ras=values["reorient_to_ras"],
        ct_window_hu=_window(values["ct_window_hu"], source),
    )
    _locatable(preset.network_class, "network_class", source)
    _locatable(preset.norm_op, "norm", source)
    _locatable(preset.nonlin_op, "nonlin", source)
    return preset

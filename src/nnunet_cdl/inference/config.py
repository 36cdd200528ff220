"""Inference settings: the preset `configs/inference.json` plus command-line overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from nnunet_cdl.errors import CdlError
from nnunet_cdl.inference.body import BodyRules
from nnunet_cdl.inference.postprocess import PostprocessRules
from nnunet_cdl.inference.tiling import TilingRules
from nnunet_cdl.io import read_json

PRESET = Path(__file__).resolve().parent.parent / "configs" / "inference.json"
EXPORTS = ("fast", "stock")
OUTPUT_TYPES = ("nifti", "dicom-seg")
Rules = TypeVar("Rules", TilingRules, BodyRules, PostprocessRules)


def available_cores() -> int:
    """CPU cores this process may run on (affinity-aware)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class InferenceSettings:
    """Everything our predictor adds to nnU-Net's: tiling, body crop, post-processing, backend, export, threads."""

    tiling: TilingRules = field(default_factory=TilingRules)
    body: BodyRules = field(default_factory=BodyRules)
    postprocess: PostprocessRules = field(default_factory=PostprocessRules)
    backend: str = "auto"
    export: str = "fast"
    """fast: trilinear input resampling, argmax at network resolution, nearest-neighbour labels back;
    stock: nnU-Net's resampling of the data and of every class's logits."""
    threads: int = field(default_factory=available_cores)
    record_dir: Path | None = None
    output_type: str = "nifti"
    """nifti: the dataset's file ending (nnU-Net's output); dicom-seg: a DICOM Segmentation per DICOM series."""
    int8_calibration: Path | None = None
    """Preprocessed training data (nnUNet_preprocessed/DatasetX/<plans>_<configuration>) for `openvino-int8`."""
    allow_any_size: bool = False
    """Skip the checks that refuse shapes and voxel sizes no CT has (`nnunet_cdl.io.check_image_size`)."""

    def with_overrides(self, **changes: object) -> InferenceSettings:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def rules_from_dict(cls: type[Rules], values: dict[str, Any], section: str) -> Rules:
    """A rules dataclass from one preset section; unknown keys are a ValueError naming the known ones, JSON lists
    become tuples (the rules are frozen and hashable)."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {section} rule(s) {unknown}; known: {known}")
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


def load_settings(path: str | os.PathLike[str] | None = None) -> InferenceSettings:
    """Settings from a preset JSON (default: the packaged `configs/inference.json`); unknown keys are errors."""
    path = Path(path) if path is not None else PRESET
    values = read_json(path)
    unknown = sorted(set(values) - {"tiling", "body", "postprocess", "backend", "export"})
    if unknown:
        raise CdlError(f"{path}: unknown key(s) {unknown}")
    try:
        settings = InferenceSettings(
            tiling=rules_from_dict(TilingRules, values.get("tiling", {}), "tiling"),
            body=rules_from_dict(BodyRules, values.get("body", {}), "body"),
            postprocess=rules_from_dict(PostprocessRules, values.get("postprocess", {}), "postprocess"),
            backend=values.get("backend", "auto"),
            export=values.get("export", "fast"),
        )
    except (TypeError, ValueError) as exc:
        raise CdlError(f"{path}: {exc}") from exc
    if settings.export not in EXPORTS:
        raise CdlError(f"{path}: export must be one of {EXPORTS}, got {settings.export!r}")
    return settings

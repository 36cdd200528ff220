"""Phantom geometry presets and generator settings, read from `configs/synth_presets.json`.

Patient frame (mm, LPS as in ITK/DICOM): +x towards the patient's left, +y posterior, +z superior, origin on
the body axis at the level of the renal hila. A canonical array (z, y, x) with identity direction therefore shows
the patient's right at low x (the image's left), anterior at low y and inferior at low z.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_cdl.errors import CdlError

CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "synth_presets.json"


@lru_cache(maxsize=1)
def synth_config() -> dict[str, Any]:
    """The parsed `synth_presets.json` (cached)."""
    return json.loads(CONFIG_PATH.read_text())


def preset_names() -> tuple[str, ...]:
    return tuple(synth_config()["presets"])


def preset_config(preset: str) -> dict[str, Any]:
    """The settings of one geometry preset; `CdlError` for an unknown name."""
    presets = synth_config()["presets"]
    if preset not in presets:
        raise CdlError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    return presets[preset]


@dataclass(frozen=True)
class ScanLayout:
    """Where a scan sits in the patient frame, before any axis flip.

    shape: (z, y, x) voxels; spacing_zyx: mm; corner_mm: patient-frame (x, y, z) of voxel (0, 0, 0);
    flips: per ITK axis (x, y, z), whether the stored array runs against the patient axis.
    """

    shape: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    corner_mm: tuple[float, float, float]
    flips: tuple[bool, bool, bool]
    half_width_mm: float
    depth_ratio: float
    table: bool
    noise_hu: float


def _uniform(rng: np.random.Generator, bounds: list[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def sample_layout(preset: str, rng: np.random.Generator, num_slices: int | None = None) -> ScanLayout:
    """Draw one scan's size, spacing, placement, body size and axis flips for `preset`.

    `num_slices` fixes the slice count (the slice thickness then follows from a plausible z extent).
    """
    cfg = preset_config(preset)
    body = synth_config()["body"]
    half_width = _uniform(rng, body["half_width_mm"])
    depth_ratio = _uniform(rng, body["depth_ratio"])
    n_xy = int(cfg["in_plane"])
    fov = 2 * half_width * _uniform(rng, cfg["field_of_view_margin"])
    pixel = float(np.clip(fov / n_xy, *cfg["pixel_mm"]))
    lo_slices, hi_slices = cfg["slices"]
    if num_slices is not None and num_slices < 1:
        raise CdlError(f"num_slices must be >= 1, got {num_slices}")
    if cfg["extent_mm"] is None:
        n_z = num_slices or int(rng.integers(lo_slices, hi_slices + 1))
        slice_mm = _uniform(rng, cfg["slice_mm"])
    else:
        n_z = num_slices or int(round(np.exp(rng.uniform(np.log(lo_slices), np.log(hi_slices)))))
        extent = np.exp(rng.uniform(*np.log(cfg["extent_mm"])))
        slice_mm = float(np.clip(extent / n_z, *cfg["slice_mm"]))
    z_extent = n_z * slice_mm
    z_center = _uniform(rng, cfg["z_center_mm"])
    # Keep the scan on the abdomen: its centre never leaves the organ span (-110..150 mm) by more than it covers.
    z_center = float(np.clip(z_center, -110 - z_extent / 2 + 40, 150 + z_extent / 2 - 40))
    flips = (False, False, False)
    if rng.random() < cfg["flip_probability"]:
        flips = ((True, True, False), (False, False, True), (True, False, False))[int(rng.integers(3))]
    # Body centre sits a little off the image centre, like a patient on a table.
    offset_x = rng.uniform(-0.04, 0.04) * n_xy * pixel
    offset_y = rng.uniform(-0.06, 0.02) * n_xy * pixel
    corner = (
        -(n_xy - 1) / 2 * pixel + offset_x,
        -(n_xy - 1) / 2 * pixel + offset_y,
        z_center - (n_z - 1) / 2 * slice_mm,
    )
    return ScanLayout(
        shape=(n_z, n_xy, n_xy),
        spacing_zyx=(slice_mm, pixel, pixel),
        corner_mm=corner,
        flips=flips,
        half_width_mm=half_width,
        depth_ratio=depth_ratio,
        table=bool(rng.random() < cfg["table_probability"]),
        noise_hu=_uniform(rng, cfg["noise_hu"]),
    )

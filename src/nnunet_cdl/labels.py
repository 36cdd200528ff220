"""The 13 FLARE abdominal organ labels and derived constants."""

from __future__ import annotations

from types import MappingProxyType

ORGANS: MappingProxyType[int, str] = MappingProxyType(
    {
        1: "liver",
        2: "right_kidney",
        3: "spleen",
        4: "pancreas",
        5: "aorta",
        6: "inferior_vena_cava",
        7: "right_adrenal_gland",
        8: "left_adrenal_gland",
        9: "gallbladder",
        10: "esophagus",
        11: "stomach",
        12: "duodenum",
        13: "left_kidney",
    }
)
"""Label id -> organ name (FLARE 2022-2024 numbering)."""

ORGAN_IDS: tuple[int, ...] = tuple(ORGANS)
NUM_CLASSES: int = len(ORGANS) + 1
"""Number of classes including background (0)."""

LABEL_IDS: MappingProxyType[str, int] = MappingProxyType({name: i for i, name in ORGANS.items()})
"""Organ name -> label id."""

TUBE_ORGANS: tuple[int, ...] = (LABEL_IDS["aorta"], LABEL_IDS["inferior_vena_cava"], LABEL_IDS["esophagus"])
"""Long tubular organs that leave the field of view (aorta, IVC, esophagus)."""

NSD_TOLERANCE_MM: MappingProxyType[int, float] = MappingProxyType(
    {1: 5.0, 2: 3.0, 3: 3.0, 4: 5.0, 5: 2.0, 6: 2.0, 7: 2.0, 8: 2.0, 9: 2.0, 10: 3.0, 11: 5.0, 12: 7.0, 13: 3.0}
)
"""Per-organ NSD tolerance in mm of FLARE's official evaluation."""


def nnunet_labels_dict() -> dict[str, int]:
    """The `labels` entry of an nnU-Net v2 dataset.json: {"background": 0, organ: id, ...}."""
    return {"background": 0, **{name: i for i, name in ORGANS.items()}}

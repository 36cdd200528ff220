"""Synthetic abdominal CT phantoms with simulated pseudo-labelers.

Public API: `synth_case`, `generate_dataset`, the corruption functions (`corrupt_label` and one per kind),
`multi_organ_dice`. See docs/synth.md (label cleaning, the paper's step for real labels, is in
`nnunet_cdl.consensus.clean`).
"""

from nnunet_cdl.synth.corruption import (
    CORRUPTIONS,
    boundary,
    corrupt_label,
    drop_organs,
    merge_labels,
    multi_organ_dice,
    shift,
    spurious_blobs,
    stray_values,
    swap_labels,
)
from nnunet_cdl.synth.dataset import generate_dataset
from nnunet_cdl.synth.phantom import synth_case, synth_case_with_info

__all__ = [
    "CORRUPTIONS",
    "boundary",
    "corrupt_label",
    "drop_organs",
    "generate_dataset",
    "merge_labels",
    "multi_organ_dice",
    "shift",
    "spurious_blobs",
    "stray_values",
    "swap_labels",
    "synth_case",
    "synth_case_with_info",
]

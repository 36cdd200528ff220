"""Tools for real labels: cleaning, consensus (CDL-UNet's reliability and difficulty scores), curriculum files,
and partial-label merging."""

from nnunet_cdl.consensus.clean import clean_labels
from nnunet_cdl.consensus.curriculum_file import CURRICULUM_FILE, Curriculum, case_fingerprint, read_curriculum
from nnunet_cdl.consensus.fusion import majority_vote, organ_reliability, staple, trusted_vote
from nnunet_cdl.consensus.scores import (
    confusion_matrix,
    difficulty_score,
    missing_organs,
    multi_organ_dice,
    pairwise_agreement,
    pairwise_dice,
    reliability_scores,
    select_candidate,
    trusted_agreement,
    trusted_organs,
)
from nnunet_cdl.consensus.tiers import TIERS, TRAINABLE_TIERS, Thresholds, assign_tier, assign_tiers, load_config

__all__ = [
    "CURRICULUM_FILE", "TIERS", "TRAINABLE_TIERS", "Curriculum", "Thresholds", "assign_tier", "assign_tiers",
    "case_fingerprint", "clean_labels", "confusion_matrix", "difficulty_score", "load_config", "majority_vote",
    "missing_organs", "multi_organ_dice", "organ_reliability", "pairwise_agreement", "pairwise_dice", "read_curriculum",
    "reliability_scores", "select_candidate", "staple", "trusted_agreement", "trusted_organs", "trusted_vote",
]

"""`nnUNetTrainerCDL`: the light U-Net trained "Easy Course then Hard Course" (CDL-UNet, section 2.2.1).

The tiers come from `curriculum.json` written by `nnunet-cdl consensus`; the trainer looks for it in the
preprocessed dataset folder, then in `$nnUNet_raw/<dataset>/` (where the consensus command writes it). Phase 1
trains on easy cases, phase 2 on easy + hard ones; erroneous cases are never trained on. Only the training keys of
nnU-Net's split are filtered: the validation split stays fixed. The phase is derived from `current_epoch`, so it
survives `--c`: the training dataloader is rebuilt whenever the epoch enters another phase, also right after
loading a checkpoint. Subclasses change the schedule by overriding `curriculum_phases`.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from nnunet_cdl.consensus.curriculum_file import CURRICULUM_FILE, Curriculum, read_curriculum
from nnunet_cdl.consensus.schedule import Phase, easy_then_hard, phase_index, phase_keys, validate_phases
from nnunet_cdl.errors import CdlError
from nnunet_cdl.training.light_unet import TrainingSchedule, nnUNetTrainerLightUNet


class nnUNetTrainerCDL(nnUNetTrainerLightUNet):
    """Light U-Net with CDL-UNet's data-level curriculum (easy, then easy + hard; erroneous never)."""

    _curriculum: Curriculum | None = None
    curriculum_phase_index: int | None = None
    """Phase the current dataloaders sample from."""
    curriculum_training_keys: tuple[str, ...] = ()
    """Training cases of the current phase (this fold)."""

    def curriculum_phases(self) -> list[Phase]:
        """The schedule: phases (start epoch, tiers). Default: the paper's 1000 : 1500 split of `num_epochs`."""
        return easy_then_hard(self.num_epochs)

    def curriculum_candidates(self) -> list[Path]:
        """Where curriculum.json is looked for, in order."""
        candidates = [Path(self.preprocessed_dataset_folder_base) / CURRICULUM_FILE]
        raw = os.environ.get("nnUNet_raw")
        if raw:
            candidates.append(Path(raw) / self.plans_manager.dataset_name / CURRICULUM_FILE)
        return candidates

    @property
    def curriculum(self) -> Curriculum:
        """The dataset's curriculum, read and checked against the preprocessed cases on first use."""
        if self._curriculum is not None:
            return self._curriculum
        candidates = self.curriculum_candidates()
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise CdlError(
                f"{self.__class__.__name__} needs {CURRICULUM_FILE}, looked in: {', '.join(map(str, candidates))}; "
                f"run `nnunet-cdl consensus` for this dataset (it writes the file next to dataset.json in "
                f"nnUNet_raw) or copy its {CURRICULUM_FILE} into the preprocessed folder"
            )
        curriculum = read_curriculum(path)
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        curriculum.check_matches(
            self.dataset_class.get_identifiers(self.preprocessed_dataset_folder), self.preprocessed_dataset_folder
        )
        phases = self.curriculum_phases()
        validate_phases(phases)
        self._curriculum = curriculum
        counts = ", ".join(f"{len(cases)} {tier}" for tier, cases in curriculum.tiers.items())
        self.print_to_log_file(f"curriculum {path}: {counts}; phases: "
                               + "; ".join(f"from epoch {p.start_epoch}: {p.describe()}" for p in phases))
        return curriculum

    def current_phase(self) -> tuple[int, Phase]:
        """(index, phase) of `current_epoch` (after training: of the last epoch). Never earlier than the phase the
        dataloaders already sample from: a wall-clock budget that grows `num_epochs` moves the phase boundaries
        later, and a run must not step back from easy + hard to easy."""
        phases = self.curriculum_phases()
        index = phase_index(phases, min(self.current_epoch, max(self.num_epochs - 1, 0)))
        if self.curriculum_phase_index is not None:
            index = max(index, min(self.curriculum_phase_index, len(phases) - 1))
        return index, phases[index]

    def do_split(self) -> tuple[list[str], list[str]]:
        """nnU-Net's split with the training keys restricted to the current phase's tiers; validation unchanged."""
        tr_keys, val_keys = super().do_split()
        index, phase = self.current_phase()
        keys = phase_keys(tr_keys, self.curriculum, phase.tiers)
        if not keys:
            raise CdlError(f"curriculum phase {index + 1} ({phase.describe()}) has no training case in fold "
                           f"{self.fold}: lower the tier thresholds or change curriculum_phases()")
        self.print_to_log_file(
            f"curriculum phase {index + 1}/{len(self.curriculum_phases())} ({phase.describe()}) at epoch "
            f"{self.current_epoch}: {len(keys)} of {len(tr_keys)} training cases, {len(val_keys)} validation cases"
        )
        self.curriculum_training_keys = tuple(keys)
        return keys, val_keys

    def on_train_start(self) -> None:
        self.curriculum_phase_index = self.current_phase()[0]
        super().on_train_start()

    def on_epoch_start(self) -> None:
        """Rebuild the dataloaders when `current_epoch` enters another phase."""
        index, phase = self.current_phase()
        if self.curriculum_phase_index is not None and index != self.curriculum_phase_index:
            self.print_to_log_file(f"curriculum: entering phase {index + 1} ({phase.describe()}) at epoch "
                                   f"{self.current_epoch}")
            self._shut_down_dataloaders()
            self.curriculum_phase_index = index
            self.dataloader_train, self.dataloader_val = self.get_dataloaders()
        super().on_epoch_start()

    def _shut_down_dataloaders(self) -> None:
        for loader in (self.dataloader_train, self.dataloader_val):
            if isinstance(loader, (NonDetMultiThreadedAugmenter, MultiThreadedAugmenter)):
                loader._finish()


class nnUNetTrainerCDL_5epochs(nnUNetTrainerCDL):
    """Short CPU run: 5 epochs (2 easy, 3 easy + hard) of 4 training and 2 validation iterations, no final
    validation."""

    schedule = TrainingSchedule(num_epochs=5, num_iterations_per_epoch=4, num_val_iterations_per_epoch=2)
    final_validation = False


class nnUNetTrainerCDL_50epochs(nnUNetTrainerCDL):
    """CPU experiment on phantoms: 50 epochs (20 easy, 30 easy + hard) of 25 training and 5 validation iterations."""

    schedule = TrainingSchedule(num_epochs=50, num_iterations_per_epoch=25, num_val_iterations_per_epoch=5)

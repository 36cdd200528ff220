"""Torch-free views of an nnU-Net model folder's plans.json: the attributes of nnU-Net's `PlansManager` and
`ConfigurationManager` that prediction reads, without importing nnU-Net's plans handler (which imports torch and
the network builders; about 3 s of a process start)."""

from __future__ import annotations

import importlib
from functools import cached_property

from nnunet_cdl.errors import CdlError

NIFTI_READER_MODULES = {
    "SimpleITKIO": "nnunetv2.imageio.simpleitk_reader_writer",
    "SimpleITKIOWithReorient": "nnunetv2.imageio.simpleitk_reader_writer",
    "NibabelIO": "nnunetv2.imageio.nibabel_reader_writer",
    "NibabelIOWithReorient": "nnunetv2.imageio.nibabel_reader_writer",
}
"""nnU-Net's 3-D reader classes by name, with the module that defines each."""


class ConfigurationView:
    """One configuration of the plans (inheritance resolved), as `ConfigurationManager` names its fields."""

    def __init__(self, configuration: dict):
        self.configuration = configuration

    @property
    def patch_size(self) -> list[int]:
        return self.configuration["patch_size"]

    @property
    def spacing(self) -> list[float]:
        return self.configuration["spacing"]

    @property
    def normalization_schemes(self) -> list[str]:
        return self.configuration["normalization_schemes"]

    @property
    def use_mask_for_norm(self) -> list[bool]:
        return self.configuration["use_mask_for_norm"]

    @property
    def previous_stage_name(self) -> str | None:
        return self.configuration.get("previous_stage")


class PlansView:
    """plans.json as `PlansManager` names what prediction reads (transposes, reader/writer, intensities)."""

    def __init__(self, plans: dict):
        self.plans = plans

    def get_configuration(self, name: str) -> ConfigurationView:
        return ConfigurationView(self._resolve(name, ()))

    def _resolve(self, name: str, visited: tuple[str, ...]) -> dict:
        configurations = self.plans["configurations"]
        if name not in configurations:
            raise CdlError(f"configuration {name!r} is not in the plans (there: {', '.join(configurations)})")
        configuration = dict(configurations[name])
        parent = configuration.get("inherits_from")
        if parent is None:
            return configuration
        if parent in visited:
            raise CdlError(f"plans: configurations inherit from each other in a circle ({' -> '.join(visited)})")
        return {**self._resolve(parent, (*visited, name)), **configuration}

    @cached_property
    def image_reader_writer_class(self) -> type:
        """The plans' reader class; nnU-Net's NIfTI readers straight from their module (nnU-Net's registry imports
        every reader, scikit-image's included: 0.2 s of start-up), any other name through the registry."""
        name = self.plans["image_reader_writer"]
        module = NIFTI_READER_MODULES.get(name)
        if module is not None:
            return getattr(importlib.import_module(module), name)
        from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

        return recursive_find_reader_writer_by_name(name)

    @property
    def transpose_forward(self) -> list[int]:
        return self.plans["transpose_forward"]

    @property
    def transpose_backward(self) -> list[int]:
        return self.plans["transpose_backward"]

    @property
    def foreground_intensity_properties_per_channel(self) -> dict:
        return self.plans.get("foreground_intensity_properties_per_channel",
                              self.plans.get("foreground_intensity_properties_by_modality"))


def num_input_channels(dataset_json: dict) -> int:
    """Image channels per case (`channel_names`, or the older `modality`) of a non-cascaded model."""
    return len(dataset_json.get("channel_names", dataset_json.get("modality", {})))


def num_segmentation_heads(dataset_json: dict) -> int | None:
    """Network outputs of a label-based model (background + every label); None for region-based training."""
    labels = dataset_json["labels"]
    if "regions_class_order" in dataset_json or any(isinstance(v, (list, tuple)) for v in labels.values()):
        return None
    return len({int(v) for k, v in labels.items() if k != "ignore"})

"""`inference.plans_view`: the torch-free plans view names what nnU-Net's PlansManager names."""

from __future__ import annotations

import pytest
from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

from nnunet_cdl.inference.plans_view import NIFTI_READER_MODULES, PlansView


@pytest.mark.parametrize("name", [*NIFTI_READER_MODULES, "Tiff3DIO"])
def test_reader_class_is_the_registry_s(name) -> None:
    assert PlansView({"image_reader_writer": name}).image_reader_writer_class is \
        recursive_find_reader_writer_by_name(name)

"""nnU-Net's nibabel readers (`NibabelIO`, `NibabelIOWithReorient`) with the same output in a third of the memory.

nnU-Net's own `read_images` takes `get_fdata()` (float64, 8 bytes a voxel) of every file and stacks the copies
into float32: reading a 512x512x1000 CT peaks at about 3.6 GiB before any prediction work. `read_images` here
writes each file's stored values (`dataobj`: int16 for a CT; float64 only when the header scales them) straight
into the float32 stack, so the peak is the stored array plus the stack (1.5 GiB for that CT). Values, spacing
and properties are the ones nnU-Net's reader returns, so its `write_seg` writes the result unchanged. Every
other reader class is called as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _lean_classes() -> tuple[type, ...]:
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient

    return NibabelIO, NibabelIOWithReorient


def read_images(reader, files: Sequence[str], keep_integers: bool = False) -> tuple[np.ndarray, dict]:
    """`reader.read_images(files)`: (C, z, y, x) float32 and the reader's properties (spacing z, y, x in mm).

    For exactly `NibabelIO` / `NibabelIOWithReorient` the same result without float64 copies; files that disagree
    in shape or spacing raise `RuntimeError`, as nnU-Net's readers do (the caller names the file). With
    `keep_integers`, files that store integers unscaled (a CT's int16) come back in that integer type, the same
    values (one file: no copy at all; `preprocess.fast_preprocess` converts them chunk by chunk).
    """
    nibabel_io, nibabel_io_with_reorient = _lean_classes()
    if type(reader) not in (nibabel_io, nibabel_io_with_reorient):
        return reader.read_images(files)
    import nibabel
    from nibabel.orientations import io_orientation

    reorient = type(reader) is nibabel_io_with_reorient
    stack: np.ndarray | None = None
    first_spacing: list[float] = []
    stuff: dict = {}
    for index, path in enumerate(files):
        image = nibabel.load(path)
        if image.ndim != 3:
            raise RuntimeError(f"{path}: only 3-D images are supported ({image.ndim} dimensions)")
        original_affine = image.affine
        if reorient:
            image = image.as_reoriented(io_orientation(original_affine))
        spacing = [float(z) for z in image.header.get_zooms()[::-1]]
        stored = np.asanyarray(image.dataobj)
        integers = keep_integers and np.issubdtype(stored.dtype, np.integer)
        if stack is None:
            first_spacing = spacing
            stuff = {"original_affine": original_affine}
            if reorient:
                stuff["reoriented_affine"] = image.affine
            if integers and len(files) == 1:  # the stored array itself with its axes reversed: no copy
                return stored.transpose((2, 1, 0))[None], {"nibabel_stuff": stuff, "spacing": first_spacing}
            stack = np.empty((len(files), *stored.shape[::-1]), dtype=stored.dtype if integers else np.float32)
        elif np.issubdtype(stack.dtype, np.integer) and not np.can_cast(stored.dtype, stack.dtype):
            stack = stack.astype(np.float32)
        if stored.shape[::-1] != stack.shape[1:] or spacing != first_spacing:
            raise RuntimeError(f"{path}: shape {stored.shape[::-1]} / spacing {spacing} differ from the first "
                               f"channel's {stack.shape[1:]} / {first_spacing}")
        np.copyto(stack[index], stored.transpose((2, 1, 0)), casting="unsafe")
        del stored, image
    if stack is None:
        raise ValueError("read_images needs at least one file")
    return stack, {"nibabel_stuff": stuff, "spacing": first_spacing}

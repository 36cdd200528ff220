"""`inference.readers.read_images` returns what nnU-Net's nibabel readers return, without their float64 copies."""

from __future__ import annotations

import tracemalloc

import nibabel
import numpy as np
import pytest
from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

from nnunet_cdl.inference.readers import read_images

READERS = (NibabelIO, NibabelIOWithReorient)


def write_nifti(path, data: np.ndarray, affine: np.ndarray, slope: float = 1.0, inter: float = 0.0) -> str:
    image = nibabel.Nifti1Image(data, affine)
    image.header.set_slope_inter(slope, inter)
    nibabel.save(image, str(path))
    return str(path)


@pytest.fixture
def ct_files(tmp_path) -> dict[str, list[str]]:
    """Files as (x, y, z) arrays: an LPS-like flipped int16 CT, a scaled one, and two channels of one case."""
    rng = np.random.default_rng(0)
    data = rng.integers(-1024, 1500, (40, 36, 12), dtype=np.int16)
    flipped = np.diag([-0.8, -0.8, 2.5, 1.0])
    flipped[:3, 3] = (10.0, -20.0, 30.0)
    permuted = np.array([[0, 0, 3.0, 0], [0.7, 0, 0, 0], [0, -0.7, 0, 0], [0, 0, 0, 1.0]])
    return {
        "flipped": [write_nifti(tmp_path / "flipped.nii.gz", data, flipped)],
        "permuted": [write_nifti(tmp_path / "permuted.nii.gz", data, permuted)],
        "scaled": [write_nifti(tmp_path / "scaled.nii.gz", data, flipped, slope=0.37, inter=-1000.5)],
        "two_channels": [write_nifti(tmp_path / "a.nii.gz", data, flipped),
                         write_nifti(tmp_path / "b.nii.gz", data[::-1].copy(), flipped)],
    }


@pytest.mark.parametrize("reader_class", READERS)
@pytest.mark.parametrize("case", ["flipped", "permuted", "scaled", "two_channels"])
def test_same_values_spacing_and_properties_as_nnunet(ct_files, reader_class, case) -> None:
    expected, expected_properties = reader_class().read_images(ct_files[case])
    got, properties = read_images(reader_class(), ct_files[case])
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert properties["spacing"] == expected_properties["spacing"]
    assert properties["nibabel_stuff"].keys() == expected_properties["nibabel_stuff"].keys()
    for key, affine in expected_properties["nibabel_stuff"].items():
        assert np.array_equal(properties["nibabel_stuff"][key], affine), key


@pytest.mark.parametrize("reader_class", READERS)
def test_written_segmentation_lands_where_nnunet_puts_it(ct_files, reader_class, tmp_path) -> None:
    image, properties = read_images(reader_class(), ct_files["permuted"])
    seg = (image[0] > 0).astype(np.uint8)
    out = str(tmp_path / "seg.nii.gz")
    reader_class().write_seg(seg, out, properties)
    written = nibabel.load(out)
    source = nibabel.load(ct_files["permuted"][0])
    assert np.allclose(written.affine, source.affine)
    assert np.array_equal(np.asanyarray(written.dataobj), (source.get_fdata() > 0).astype(np.uint8))


def test_other_readers_are_called_as_they_are(tmp_path) -> None:
    import SimpleITK as sitk

    path = str(tmp_path / "ct.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)), path)
    expected, expected_properties = SimpleITKIO().read_images([path])
    got, properties = read_images(SimpleITKIO(), [path])
    assert np.array_equal(got, expected) and properties["spacing"] == expected_properties["spacing"]


def test_channels_that_disagree_in_shape_are_refused(tmp_path) -> None:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    files = [write_nifti(tmp_path / "a.nii.gz", np.zeros((8, 8, 4), np.int16), affine),
             write_nifti(tmp_path / "b.nii.gz", np.zeros((8, 8, 5), np.int16), affine)]
    with pytest.raises(RuntimeError, match="b.nii.gz"):
        read_images(NibabelIOWithReorient(), files)


def test_no_float64_copy_of_the_volume(tmp_path) -> None:
    """The lean read's peak allocation is the stored int16 array plus the float32 stack (6 bytes a voxel);
    nnU-Net's adds an 8-byte float64 copy."""
    data = np.zeros((128, 128, 64), dtype=np.int16)
    path = write_nifti(tmp_path / "ct.nii", data, np.diag([0.8, 0.8, 2.5, 1.0]))
    peaks = {}
    for name, read in (("nnunet", lambda: NibabelIOWithReorient().read_images([path])),
                       ("lean", lambda: read_images(NibabelIOWithReorient(), [path]))):
        tracemalloc.start()
        result = read()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del result
    assert peaks["lean"] <= 6.5 * data.size < peaks["nnunet"], peaks


@pytest.mark.parametrize("reader_class", READERS)
def test_keep_integers_returns_the_stored_values_without_conversion(ct_files, reader_class) -> None:
    floats, properties = read_images(reader_class(), ct_files["flipped"])
    integers, integer_properties = read_images(reader_class(), ct_files["flipped"], keep_integers=True)
    assert integers.dtype == np.int16 and np.array_equal(integers, floats)
    assert integer_properties["spacing"] == properties["spacing"]
    for key, affine in properties["nibabel_stuff"].items():
        assert np.array_equal(integer_properties["nibabel_stuff"][key], affine), key
    two, _ = read_images(reader_class(), ct_files["two_channels"], keep_integers=True)
    assert two.dtype == np.int16 and np.array_equal(two, read_images(reader_class(), ct_files["two_channels"])[0])
    scaled, _ = read_images(reader_class(), ct_files["scaled"], keep_integers=True)
    assert scaled.dtype == np.float32  # a scaled file's values are not its stored integers

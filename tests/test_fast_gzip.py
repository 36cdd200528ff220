"""ISA-L for nibabel's .nii.gz: identical arrays, valid gzip, and nibabel's own handling back on uninstall."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener, Opener

from nnunet_cdl import fast_gzip


def test_isal_reads_and_writes_what_zlib_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(-1024, 2000, size=(40, 30, 20)).astype(np.int16)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    fast_gzip.uninstall()
    zlib_entry = Opener.compress_ext_map[".gz"]
    nib.save(nib.Nifti1Image(array, affine), tmp_path / "zlib.nii.gz")
    try:
        assert fast_gzip.install() and fast_gzip.install()
        assert Opener.compress_ext_map[".gz"][0] is fast_gzip.isal_gzip_open
        assert ImageOpener.compress_ext_map[".gz"][0] is fast_gzip.isal_gzip_open
        np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "zlib.nii.gz").dataobj), array)
        nib.save(nib.Nifti1Image(array, affine), tmp_path / "isal.nii.gz")
    finally:
        fast_gzip.uninstall()
    assert Opener.compress_ext_map[".gz"] is zlib_entry
    with gzip.open(tmp_path / "isal.nii.gz") as handle:  # plain zlib gzip reads what ISA-L wrote
        raw = handle.read()
    assert len(raw) == 352 + array.nbytes
    loaded = nib.load(tmp_path / "isal.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(loaded.dataobj), array)
    np.testing.assert_allclose(loaded.affine, affine)
    fast_gzip.install()  # leave it as the predictor module does

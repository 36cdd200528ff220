"""Intel ISA-L (`python-isal`) in place of zlib for the `.nii.gz` files nibabel reads and writes.

nnU-Net's `NibabelIO` / `NibabelIOWithReorient` go through nibabel, which opens `.gz` files with Python's zlib
based `gzip`; most of the time of reading a 512x512x1000 CT is spent decompressing. `install()` registers ISA-L's
`igzip` (a drop-in for `gzip`, 2-3x faster to decompress, faster to compress at nibabel's level 1) for nibabel's
`.gz` files. The bytes read are identical; written files are valid gzip with mtime 0 (deterministic, as
nibabel's own), slightly different compressed bytes. Without `isal` nothing changes.
"""

from __future__ import annotations

from typing import Any

_ZLIB_ENTRIES: dict[type, tuple] = {}
"""nibabel's own `.gz` entries, kept by `install` for `uninstall`."""


def isal_gzip_open(filename: str, mode: str = "rb", compresslevel: int = 1, mtime: int = 0,
                   keep_open: bool = False) -> Any:
    """nibabel's `gzip_open` signature, served by ISA-L (`compresslevel` capped at ISA-L's maximum, 3)."""
    from isal import igzip, isal_zlib

    return igzip.IGzipFile(filename, mode, compresslevel=min(int(compresslevel), isal_zlib.ISAL_BEST_COMPRESSION),
                           mtime=mtime)


def install() -> bool:
    """Serve nibabel's `.gz` reads and writes with ISA-L; True when it is in use (idempotent)."""
    if _ZLIB_ENTRIES:
        return True
    try:
        import isal.igzip  # noqa: F401
        from nibabel.openers import ImageOpener, Opener
    except ImportError:
        return False
    for opener in (Opener, ImageOpener):
        _ZLIB_ENTRIES[opener] = opener.compress_ext_map[".gz"]
        opener.compress_ext_map[".gz"] = (isal_gzip_open, _ZLIB_ENTRIES[opener][1])
    return True


def uninstall() -> None:
    """Give nibabel its zlib `.gz` handling back."""
    for opener, entry in _ZLIB_ENTRIES.items():
        opener.compress_ext_map[".gz"] = entry
    _ZLIB_ENTRIES.clear()

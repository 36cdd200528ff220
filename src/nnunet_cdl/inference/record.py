"""Per-case timing and memory record: written as JSON, summarised as one progress line."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

STAGES = ("reading", "preprocessing", "network", "exporting", "writing")


def rss_mb() -> float:
    """Resident memory of this process now, MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def release_free_memory() -> None:
    """Hand memory freed by the last case back to the system (glibc's `malloc_trim`; a no-op elsewhere), so that
    cases of different sizes do not ratchet the resident memory up one arena at a time."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class CaseRecord:
    """What one case cost: seconds per stage, windows, body box, peak memory, and its outcome."""

    case: str
    inputs: list[str]
    output: str | None
    backend: str = ""
    threads: int = 0
    tiling: str = "adaptive"
    export: str = "fast"
    postprocess: bool = True
    predictor: str = ""
    """`nnUNetCdlPredictor` (PyTorch loaded, any backend) or `LeanPredictor` (the OpenVINO command path)."""
    first_window_after_start_s: float | None = None
    """Seconds from process start to the first window, in the record of the process's first predicted case."""
    seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    windows: dict[str, object] = field(default_factory=dict)
    image_shape: list[int] = field(default_factory=list)
    body_box: list[list[int]] | None = None
    network_shape: list[int] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    rss_mb: float = 0.0
    """Resident memory after the case, MiB (flat from case to case when nothing leaks)."""
    status: str = "ok"
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    """What made the input suspicious without refusing it (e.g. values that look like a label map)."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to `seconds[name]`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds[name] + time.perf_counter() - start, 4)

    @property
    def total_seconds(self) -> float:
        return round(sum(self.seconds.values()), 4)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["seconds"]["total"] = self.total_seconds
        return data

    def progress_line(self, index: int, count: int) -> str:
        """One line per case: outcome, time per stage, windows, peak memory."""
        head = f"[{index}/{count}] {self.case}:"
        if self.status != "ok":
            return f"{head} FAILED: {self.error}"
        s = self.seconds
        windows = self.windows
        return (
            f"{head} {self.total_seconds:.1f} s (read {s['reading']:.1f}, preprocess {s['preprocessing']:.1f}, "
            f"network {s['network']:.1f}, export {s['exporting']:.1f}, write {s['writing']:.1f}); "
            f"windows {windows.get('run', '?')} run / {windows.get('skipped', '?')} skipped "
            f"({windows.get('grid', '?')} grid); peak {self.peak_rss_mb / 1024:.2f} GiB"
            + "".join(f"; WARNING: {w}" for w in self.warnings)
        )

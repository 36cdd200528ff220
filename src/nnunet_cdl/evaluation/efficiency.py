"""Wall time and peak memory of a prediction command's whole process tree, and `efficiency.csv`.

Memory is sampled with psutil every `interval` seconds: the resident set size (RSS) of the command's process
and all its descendants, summed. Short spikes between samples can be missed, so the kernel's exact maximum RSS
of any single process of the tree (`wait4` rusage `ru_maxrss`) is recorded too, as `max_process_rss_mb`; Linux
also counts there the pages the launching process held when it forked the command (before exec), so with a
large launcher (a test run with torch loaded) it is an upper bound and stays out of `peak_rss_mb`. FLARE's efficiency
script samples every 0.1 s as well, but the machine's total used RAM and GPU memory; a tree's own RSS is not
disturbed by other work on the machine.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import atomic_path

EFFICIENCY_FILE = "efficiency.csv"
EFFICIENCY_COLUMNS = (
    "case",
    "shape",
    "wall_s",
    "peak_rss_mb",
    "exit_code",
    "max_process_rss_mb",
    "rss_area_mb_s",
    "timed_out",
)
"""case id; image shape z x y x x; wall time (s); peak summed RSS of the tree (MB); exit code of the command;
largest RSS of one process of the tree (MB, from the kernel; peak_rss_mb is at least this); area under the
summed RSS curve (MB s); whether it was killed at the time limit."""

MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Measurement:
    """What one run of a command cost: wall time (s), memory (MB), exit code (negative: killed by a signal)."""

    wall_s: float
    peak_rss_mb: float
    exit_code: int
    max_process_rss_mb: float
    rss_area_mb_s: float
    timed_out: bool


def tree_rss_bytes(root: psutil.Process) -> int:
    """Summed RSS (bytes) of `root` and all its descendants that are alive at this instant."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def kill_tree(pid: int) -> None:
    """SIGKILL the process group (session) of `pid`, started with `start_new_session=True`."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def run_measured(
    command: str,
    interval: float = 0.1,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Measurement:
    """Run `command` with /bin/sh in its own session, sampling the summed RSS of its tree every `interval` s.

    stdout and stderr go to `log` when given (else they are inherited). The command is killed (whole process
    group) after `timeout` seconds.
    """
    if interval <= 0:
        raise CdlError(f"--interval must be > 0, got {interval}")
    handle = open(log, "w") if log is not None else None
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        shell=True,
        start_new_session=True,
        stdout=handle,
        stderr=subprocess.STDOUT if handle else None,
        env=None if env is None else dict(env),
    )
    root = psutil.Process(process.pid)
    peak = area = previous_rss = 0.0
    previous_time = start
    timed_out = False
    try:
        while True:
            rss = tree_rss_bytes(root) / MB
            now = time.perf_counter()
            area += 0.5 * (rss + previous_rss) * (now - previous_time)
            peak, previous_rss, previous_time = max(peak, rss), rss, now
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid != 0:
                break
            if not timed_out and timeout is not None and now - start > timeout:
                timed_out = True
                kill_tree(process.pid)
            time.sleep(interval)
    except BaseException:
        kill_tree(process.pid)
        process.wait()
        raise
    finally:
        if handle is not None:
            handle.close()
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    kill_tree(process.pid)  # daemons left behind in the command's session
    max_process = usage.ru_maxrss * (1.0 if sys.platform == "darwin" else 1024.0) / MB
    # The kernel's maximum also counts the launching process's pages at fork (before exec): it is an upper bound of
    # the largest process, so it never enters the sampled tree peak.
    return Measurement(wall, peak, process.returncode, max_process, area, timed_out)


def efficiency_row(case: str, shape: Sequence[int], measurement: Measurement) -> dict[str, Any]:
    """One `efficiency.csv` row; shape is written z x y x x, numbers rounded to 3 decimals."""
    row: dict[str, Any] = {"case": case, "shape": "x".join(str(n) for n in shape)}
    for key, value in asdict(measurement).items():
        row[key] = round(value, 3) if isinstance(value, float) else value
    return row


def write_efficiency_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write `efficiency.csv` atomically with `EFFICIENCY_COLUMNS`."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EFFICIENCY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_efficiency_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an `efficiency.csv` written by `nnunet-cdl bench`; CdlError when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise CdlError(f"{path}: file not found")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        required = ("case", "wall_s", "peak_rss_mb", "exit_code")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CdlError(f"{path}: not an efficiency.csv of `nnunet-cdl bench` (no column {', '.join(missing)})")
        rows = list(reader)
    try:
        for row in rows:
            row["wall_s"], row["peak_rss_mb"] = float(row["wall_s"]), float(row["peak_rss_mb"])
            row["exit_code"] = int(row["exit_code"])
    except ValueError as exc:
        raise CdlError(f"{path}: a number could not be read ({exc})") from exc
    return rows


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, median, population std, max and total of `values` (3 decimals; None when empty)."""
    if not values:
        return {"mean": None, "median": None, "std": None, "max": None, "total": None}
    array = np.asarray(values, dtype=float)
    stats = (array.mean(), np.median(array), array.std(), array.max(), array.sum())
    return dict(zip(("mean", "median", "std", "max", "total"), (round(float(v), 3) for v in stats)))


def efficiency_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The `efficiency` section of `summary.json`: statistics of wall time and peak RSS over successful runs."""
    ok = [row for row in rows if int(row["exit_code"]) == 0]
    peak_memory = describe([float(row["peak_rss_mb"]) for row in ok])
    peak_memory.pop("total")
    return {
        "num_cases": len(rows),
        "failed_cases": [str(row["case"]) for row in rows if int(row["exit_code"]) != 0],
        "wall_s": describe([float(row["wall_s"]) for row in ok]),
        "peak_rss_mb": peak_memory,
        "memory": "peak summed RSS of the command's process tree (psutil samples; at least the largest process's)",
    }


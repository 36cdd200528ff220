"""Process-pool map with a progress bar, and nnU-Net style splitting of work into parts."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from tqdm import tqdm

from nnunet_cdl.errors import CdlError

T = TypeVar("T")
R = TypeVar("R")


def select_part(items: Sequence[T], num_parts: int, part_id: int) -> list[T]:
    """The items of part `part_id` of `num_parts`, as nnU-Net splits them (`items[part_id::num_parts]`)."""
    if num_parts < 1:
        raise CdlError(f"--num-parts must be >= 1, got {num_parts}")
    if not 0 <= part_id < num_parts:
        raise CdlError(f"--part-id must be in 0..{num_parts - 1}, got {part_id}")
    return list(items[part_id::num_parts])


def parallel_map(
    func: Callable[[T], R], items: Iterable[T], num_processes: int = 1, desc: str = "", unit: str = "case"
) -> list[R]:
    """`[func(x) for x in items]` over `num_processes` spawned workers, in order, with a progress bar on stderr.

    `func` must be picklable (a module-level function). With one process nothing is spawned.
    """
    items = list(items)
    if num_processes < 1:
        raise CdlError(f"--num-processes must be >= 1, got {num_processes}")
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=None, dynamic_ncols=True)
    results: list[R] = []
    try:
        if num_processes == 1 or len(items) <= 1:
            for item in items:
                results.append(func(item))
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(num_processes, len(items))) as pool:
                for result in pool.imap(func, items):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results

"""Shared fixtures: everything runs on synthetic phantoms in temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep tests on the CPU and predictable on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("nnUNet_n_proc_DA", "0")


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DatasetNNN folder of a small-preset phantom dataset: id 501, 6 training + 2 test cases, 3 sources, seed 0.

    Shared by the whole session: read it, never modify it (copy it first).
    """
    from nnunet_cdl.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synth_raw"), 501, 6, num_test=2, preset="small", seed=0)

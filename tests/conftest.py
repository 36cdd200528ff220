"""Shared fixtures: everything runs on synthetic phantoms in temporary folders."""

from __future__ import annotations

import os

# Keep tests on the CPU and predictable on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("nnUNet_n_proc_DA", "0")

"""What this CPU can do natively (instruction-set probes used by training and inference)."""

from __future__ import annotations

import platform
from pathlib import Path


SPEED_EXTENSIONS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
"""Instruction-set extensions that decide how fast the networks run on a CPU (reported with measurements)."""


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_model_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` says."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_extensions() -> list[str]:
    """Which of `SPEED_EXTENSIONS` this CPU has (empty where /proc/cpuinfo is missing)."""
    flags = next((line.split(":", 1)[1].split() for line in _cpuinfo().splitlines() if line.startswith("flags")), [])
    return [name for name in SPEED_EXTENSIONS if name in flags]


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (x86 AVX512-BF16 / AMX, or arm64 with bf16)."""
    if platform.system() == "Linux" and Path("/proc/cpuinfo").is_file():
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
        return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", " bf16"))
    return platform.machine() == "arm64"

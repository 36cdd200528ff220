"""What this CPU can do natively (instruction-set probes used by training and inference)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (x86 AVX512-BF16 / AMX, or arm64 with bf16)."""
    if platform.system() == "Linux" and Path("/proc/cpuinfo").is_file():
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
        return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", " bf16"))
    return platform.machine() == "arm64"

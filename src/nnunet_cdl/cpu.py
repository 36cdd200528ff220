"""What this CPU can do natively (instruction-set probes used by training and inference)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


SPEED_EXTENSIONS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
"""Instruction-set extensions that decide how fast the networks run on a CPU (reported with measurements)."""


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once per process (empty where it is missing)."""
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


def _cpu_flags() -> set[str]:
    """The x86 feature flags of /proc/cpuinfo (empty where it is missing)."""
    return set(next((line.split(":", 1)[1].split() for line in _cpuinfo().splitlines()
                     if line.startswith("flags")), []))


def cpu_extensions() -> list[str]:
    """Which of `SPEED_EXTENSIONS` this CPU has (empty where /proc/cpuinfo is missing)."""
    flags = _cpu_flags()
    return [name for name in SPEED_EXTENSIONS if name in flags]


ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA")
"""Caps on the instruction set: oneDNN's (PyTorch, and OpenVINO's oneDNN kernels) and OpenVINO's own (its JIT
kernels; honoured by debug-caps builds). Both are set together to one oneDNN ISA name."""
LAPTOP_ISA = "AVX2_VNNI"
"""What a typical laptop has: AVX2 with VNNI, no AVX-512 (oneDNN's name)."""
BF16_ISAS = frozenset({"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                       "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
                       "ALL", "DEFAULT"})
"""Caps under which native bfloat16 stays available (oneDNN ISA names)."""


def isa_cap_env(isa: str) -> dict[str, str]:
    """Environment that caps PyTorch's and OpenVINO's instruction set to `isa` (a oneDNN ISA name)."""
    return {name: isa for name in ISA_CAP_VARIABLES}


def isa_cap(environ: dict[str, str] | None = None) -> str | None:
    """The instruction-set cap in force (`ONEDNN_MAX_CPU_ISA`, upper case), or None."""
    value = (os.environ if environ is None else environ).get(ISA_CAP_VARIABLES[0], "").strip().upper()
    return value or None


VNNI_ISAS_AVX2 = frozenset({"AVX2_VNNI", "AVX2_VNNI_2"})
"""Caps that keep VNNI where the CPU has AVX-VNNI (`avx_vnni`, the 256-bit form laptops have)."""
VNNI_ISAS_AVX512 = frozenset({"AVX512_CORE_VNNI"}) | (BF16_ISAS - {"ALL", "DEFAULT"})
"""Caps that keep VNNI where the CPU has AVX512-VNNI (`avx512_vnni`)."""


def cpu_supports_vnni(environ: dict[str, str] | None = None) -> bool:
    """True when int8 convolutions run on VNNI (`vpdpbusd`: u8 x s8 products summed straight into 32 bits) under
    the instruction-set cap in force. Without VNNI x86 CPUs sum pairs of products in saturating 16 bits, so int8
    models for them need 7-bit weights (NNCF's overflow fix)."""
    flags = _cpu_flags()
    avx2_vnni, avx512_vnni = "avx_vnni" in flags, "avx512_vnni" in flags or "amx_int8" in flags
    cap = isa_cap(environ)
    if cap is None or cap in ("ALL", "DEFAULT"):
        return avx2_vnni or avx512_vnni
    if cap in VNNI_ISAS_AVX2:
        return avx2_vnni
    return cap in VNNI_ISAS_AVX512 and avx512_vnni


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (x86 AVX512-BF16 / AMX, or arm64 with bf16) and no
    instruction-set cap (`isa_cap`) hides it."""
    cap = isa_cap()
    if cap is not None and cap not in BF16_ISAS:
        return False
    if platform.system() == "Linux" and Path("/proc/cpuinfo").is_file():
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
        return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", " bf16"))
    return platform.machine() == "arm64"

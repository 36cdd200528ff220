"""nnunet_cdl.cpu: model name and speed extensions read from /proc/cpuinfo."""

from __future__ import annotations

import pytest

from nnunet_cdl import cpu

CPUINFO = "processor\t: 0\nmodel name\t: Test Xeon 9999\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile avx512_bf16\n"


def test_model_name_and_extensions_from_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: CPUINFO)
    assert cpu.cpu_model_name() == "Test Xeon 9999"
    assert cpu.cpu_extensions() == ["avx2", "avx512f", "avx512_bf16", "amx_bf16"]


def test_without_cpuinfo_the_name_comes_from_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: "")
    assert cpu.cpu_model_name()
    assert cpu.cpu_extensions() == []


def test_an_isa_cap_below_avx512_bf16_hides_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: CPUINFO)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    native = cpu.cpu_supports_bf16()
    for name, value in cpu.isa_cap_env(cpu.LAPTOP_ISA).items():
        monkeypatch.setenv(name, value)
    assert cpu.isa_cap() == "AVX2_VNNI" and not cpu.cpu_supports_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    assert cpu.cpu_supports_bf16() == native


@pytest.mark.parametrize("flags, cap, expected", [
    ("avx2 avx512f avx512_vnni", None, True),
    ("avx2 avx_vnni", None, True),
    ("avx2 fma", None, False),
    ("avx2 avx512f avx512_vnni avx_vnni", "AVX2_VNNI", True),
    ("avx2 avx512f avx512_vnni", "AVX2_VNNI", False),  # AVX-512 VNNI only: a 256-bit cap leaves plain AVX2
    ("avx2 avx512f avx512_vnni", "AVX512_CORE", False),
    ("avx2 avx512f avx512_vnni", "AVX512_CORE_VNNI", True),
    ("avx2 avx512f amx_int8 avx512_vnni", "AVX512_CORE_AMX", True),
    ("avx2 avx_vnni", "AVX2", False),
])
def test_vnni_follows_the_flags_and_the_isa_cap(monkeypatch: pytest.MonkeyPatch, flags: str, cap: str | None,
                                                expected: bool) -> None:
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: f"model name\t: Test\nflags\t\t: fpu {flags}\n")
    environ = {} if cap is None else cpu.isa_cap_env(cap)
    assert cpu.cpu_supports_vnni(environ) is expected

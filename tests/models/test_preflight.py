"""Preflight: each engine's tiny real run in a subprocess; a crash by signal is named, with the
CPU and the fix, and `phoneagent serve` refuses to start instead of dying on a call."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

from models import preflight
from models.preflight import CheckResult, CpuInfo, EngineCheck, PreflightError

ROOT = Path(__file__).resolve().parents[2]

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 avx512f amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 avx512f amx_bf16 amx_tile amx_int8
"""
XEON = preflight.parse_cpuinfo(CPUINFO)


def _child(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_parse_cpuinfo_reads_model_and_flags() -> None:
    assert XEON.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert "amx_tile" in XEON.flags and "avx2" in XEON.flags
    assert XEON.missing == ()
    old = preflight.parse_cpuinfo("model name : Old CPU\nflags : fpu sse4_2 avx\n")
    assert old.missing == ("avx2", "fma", "f16c", "bmi2")


def test_a_child_killed_by_sigill_is_named_with_engine_signal_cpu_and_fix() -> None:
    # A real process that dies by SIGILL, as llama.cpp's AMX kernels do on a Xeon that
    # advertises AMX without granting the tile permission to worker threads.
    check = EngineCheck("llama.cpp", _child("import os, signal; os.kill(os.getpid(), signal.SIGILL)"))
    with pytest.raises(PreflightError) as info:
        preflight.ensure([check], cpu=XEON)
    (result,) = info.value.results
    assert result.signal is signal.SIGILL and not result.ok
    msg = str(info.value)
    assert "engine llama.cpp died by signal SIGILL" in msg
    assert "Intel(R) Xeon(R) Platinum 8480+" in msg
    assert "amx_tile" in msg and "avx2" in msg  # the CPU's flags
    assert "rebuild" in msg and "./dev test" in msg


def test_only_the_failed_engines_are_reported() -> None:
    checks = [
        EngineCheck("silero", _child("print('fine')")),
        EngineCheck("whisper", _child("import sys; print('no model here', file=sys.stderr); sys.exit(7)")),
        EngineCheck("piper", _child("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")),
    ]
    with pytest.raises(PreflightError) as info:
        preflight.ensure(checks, cpu=XEON)
    msg = str(info.value)
    assert "2 of 3 engine(s)" in msg
    assert "engine whisper failed its test run (exit status 7)" in msg and "no model here" in msg
    assert "engine piper died by signal SIGSEGV" in msg
    assert "engine silero" not in msg
    assert [r.ok for r in info.value.results] == [True, False, False]


def test_a_hung_engine_is_killed_after_the_timeout() -> None:
    with pytest.raises(PreflightError, match="engine llama.cpp did not finish its test run"):
        preflight.ensure([EngineCheck("llama.cpp", _child("import time; time.sleep(60)"))], timeout_s=1.0, cpu=XEON)


def test_a_cpu_without_avx2_is_told_so() -> None:
    old = CpuInfo("Old CPU", ("fpu", "sse4_2", "avx"))
    text = preflight.describe_failure(CheckResult("llama.cpp", -int(signal.SIGILL), 0.1), old)
    assert "lacks avx2 fma f16c bmi2" in text


def test_serve_refuses_to_start_when_an_engine_dies(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from phoneagent import cli
    from phoneagent import service

    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("serve must not start after a failed preflight")

    monkeypatch.setattr(preflight, "checks_for", lambda *_a, **_k: [
        EngineCheck("llama.cpp", _child("import os, signal; os.kill(os.getpid(), signal.SIGILL)"))])
    monkeypatch.setattr(service, "serve", never)
    assert cli.main(["serve", "--port", "0"]) == 3
    err = capsys.readouterr().err
    assert "refusing to start" in err and "llama.cpp died by signal SIGILL" in err
    assert preflight.cpu_info().model in err


def test_every_bundled_engine_passes_its_real_preflight() -> None:
    """The real engines, each in its own subprocess, on this machine's CPU."""
    results = preflight.ensure(preflight.checks_for(device="cpu"))
    assert sorted(r.engine for r in results) == ["llama.cpp", "piper", "silero", "smart-turn", "whisper"]
    for r in results:
        assert r.ok and f"{r.engine}: ok" in r.output, r.output


def test_dev_builds_the_llama_version_that_setup_cfg_pins() -> None:
    """./dev's wheel cache key names a version; pip must not swap in another one."""
    dev = (ROOT / "dev").read_text()
    cfg = (ROOT / "setup.cfg").read_text()
    built = re.search(r'^LLAMA_CPP_PYTHON_VERSION=([\d.]+)$', dev, re.M)
    pinned = re.search(r'^\s*llama-cpp-python==([\d.]+)$', cfg, re.M)
    assert built and pinned and built.group(1) == pinned.group(1)

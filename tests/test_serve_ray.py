"""The Ray Serve backend on a local cluster (slow: one cluster of two engine shards for the whole module).

The same job gives the same images on Ray as in-process, and a replica killed while its round runs loses nothing:
every job of that round is answered by another shard.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

TOPIC = ("a red house on snow at sunset", "one red cottage on snowy ground at sunset", "a red cabin on snow at sunset",
         "red house on a snowfield at sundown", "a single crimson house on snow at dusk",
         "a red house in a snowy field at sunset", "a warm picture of a red house on snow at sunset",
         "a scarlet home on snow in the evening glow")


def _job(prompts, seed):
    from rlli.diffusion.engine import Request
    from rlli.personas.judge import BigFive
    from rlli.serve.backend import Job

    return Job(tuple(Request(p, seed=seed + i, request_id=str(i)) for i, p in enumerate(prompts)), (BigFive(),) * len(prompts))


@pytest.fixture(scope="module")
def settings():
    from rlli.config import Settings

    return Settings().model_copy(update={"policy": "fork_max", "round_window_s": 0.5, "round_max_requests": 8})


@pytest.fixture(scope="module")
def ray_backend(settings):
    from rlli.serve.ray_backend import RayBackend

    b = RayBackend(settings, replicas=2, routing="affinity", num_cpus=0.25)
    yield b
    b.close()


def test_ray_gives_the_same_images_for_the_same_seeds_as_in_process(ray_backend, settings):
    from rlli.serve.backend import InProcessBackend

    prompts = ("a red house on snow at sunset", "a red house on the snow at sunset", "red house on snow at sunset")
    job = _job(prompts, seed=11)  # two of them share 12 of 20 steps with these seeds (checked in-process)
    remote = ray_backend.submit(job)
    local_backend = InProcessBackend(settings)
    try:
        local = local_backend.submit(job)
    finally:
        local_backend.close()
    assert remote.indices == local.indices == (0, 1, 2)
    assert [r.prompt for r in remote.report.requests] == list(prompts)
    for a, b in zip(remote.report.requests, local.report.requests):
        assert a.seed == b.seed and a.fork_step == b.fork_step
        np.testing.assert_array_equal(a.image, b.image)
    assert remote.report.accounting.passes == local.report.accounting.passes
    assert remote.report.accounting.passes < remote.report.accounting.passes_independent  # the round shared steps


def test_nothing_is_lost_when_a_replica_dies_mid_round(ray_backend):
    shard = ray_backend.router.pick([TOPIC[0]])  # where this topic lives (affinity)
    before = ray_backend.counters()[shard]
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            results[i] = ray_backend.submit(_job([TOPIC[i]], seed=100 + i))
        except BaseException as e:  # noqa: BLE001 - counted below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(TOPIC))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300  # a guard against a hang, not a timing bound
    while time.monotonic() < deadline:  # wait for the shard's round to start, then kill it (as a crash would)
        c = ray_backend.handles[shard].counters.remote().result()
        if c["rounds_started"] > c["rounds_done"] and c["rounds_started"] > before["rounds_started"]:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the round never started")
    ray_backend.kill_replica(shard)
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == list(range(len(TOPIC)))
    for i, sl in results.items():
        assert [sl.report.requests[k].prompt for k in sl.indices] == [TOPIC[i]]
    assert ray_backend.retried >= 1  # the round in flight died and its jobs were sent again

"""The round batcher without timing: rounds close on their count (the window is long) or at once (window 0);
every wait is on an event, never a sleep."""

import threading

import pytest

from rlli.serve.batcher import BatcherClosed, RoundBatcher


def submit_all(batcher, items):
    """Submit each item from its own thread; wait until every submitter has its result or error."""
    results, errors = {}, {}

    def one(x):
        try:
            results[x] = batcher.submit(x)
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            errors[x] = e

    threads = [threading.Thread(target=one, args=(x,)) for x in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_requests_of_one_window_share_one_round_and_get_their_own_results():
    rounds = []
    b = RoundBatcher(lambda batch: rounds.append(list(batch)) or [x * 10 for x in batch], window_s=60.0,
                     max_requests=6)
    results, errors = submit_all(b, range(6))
    assert not errors and results == {x: x * 10 for x in range(6)}
    assert len(rounds) == 1 and sorted(rounds[0]) == list(range(6))


def test_a_full_round_closes_without_waiting_for_the_window_and_later_requests_form_the_next():
    rounds = []
    b = RoundBatcher(lambda batch: rounds.append(list(batch)) or list(batch), window_s=60.0, max_requests=3)
    results, errors = submit_all(b, range(6))  # would wait a minute per round if the count did not close it
    assert not errors and len(results) == 6 and [len(r) for r in rounds] == [3, 3]


def test_with_no_window_every_request_is_its_own_round():
    rounds = []
    b = RoundBatcher(lambda batch: rounds.append(list(batch)) or list(batch), window_s=0.0, max_requests=10)
    assert b.submit("a") == "a" and b.submit("b") == "b"
    assert rounds == [["a"], ["b"]] and b.rounds_run == 2


def test_a_failing_round_reaches_every_submitter():
    def boom(batch):
        raise ValueError("engine failed")

    b = RoundBatcher(boom, window_s=60.0, max_requests=3)
    results, errors = submit_all(b, range(3))
    assert not results and len(errors) == 3 and all("engine failed" in str(e) for e in errors.values())
    with pytest.raises(ValueError):
        RoundBatcher(lambda b: b, window_s=-1, max_requests=1)


def test_close_fails_the_waiting_requests_and_lets_the_running_round_finish():
    running, release = threading.Event(), threading.Event()

    def run(batch):
        running.set()
        release.wait()
        return list(batch)

    b = RoundBatcher(run, window_s=60.0, max_requests=1)
    first = {}
    t = threading.Thread(target=lambda: first.setdefault("r", b.submit("first")))
    t.start()
    assert running.wait(30)
    b2 = RoundBatcher(lambda batch: list(batch), window_s=60.0, max_requests=5)
    waiting = {}
    w = threading.Thread(target=lambda: waiting.setdefault("e", _error(lambda: b2.submit("late"))))
    w.start()
    while b2._open is None:  # the waiting request has opened its round (a spin on state, not on time)
        threading.Event().wait(0.001)
    b2.close()
    w.join()
    assert isinstance(waiting["e"], BatcherClosed)
    assert b.close(timeout_s=0.0) is False  # a round is running
    release.set()
    t.join()
    assert first["r"] == "first" and b.close(timeout_s=30) is True
    with pytest.raises(BatcherClosed):
        b.submit("after")


def _error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    return None

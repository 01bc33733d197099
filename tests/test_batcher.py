import threading
import time

import pytest

from rlli.session.batcher import RoundBatcher


def submit_all(batcher, items, stagger_s=0.0):
    results, errors = {}, {}

    def one(x):
        try:
            results[x] = batcher.submit(x, timeout=30)
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            errors[x] = e

    threads = []
    for x in items:
        t = threading.Thread(target=one, args=(x,))
        t.start()
        threads.append(t)
        time.sleep(stagger_s)
    for t in threads:
        t.join(30)
    return results, errors


def test_requests_within_the_window_share_one_round_and_get_their_own_results():
    rounds = []
    b = RoundBatcher(lambda batch: rounds.append(list(batch)) or [x * 10 for x in batch], window_s=0.5,
                     max_requests=100)
    results, errors = submit_all(b, range(6), stagger_s=0.02)
    assert not errors
    assert results == {x: x * 10 for x in range(6)}
    assert len(rounds) == 1 and sorted(rounds[0]) == list(range(6))


def test_a_full_round_closes_early_and_later_requests_form_the_next():
    rounds = []
    b = RoundBatcher(lambda batch: rounds.append(list(batch)) or list(batch), window_s=5.0, max_requests=3)
    start = time.monotonic()
    results, errors = submit_all(b, range(6), stagger_s=0.01)
    assert not errors and len(results) == 6
    assert [len(r) for r in rounds] == [3, 3]
    assert time.monotonic() - start < 4.0, "full rounds must not wait for the window"


def test_requests_after_the_window_go_to_a_new_round():
    rounds = []
    b = RoundBatcher(lambda batch: rounds.append(list(batch)) or list(batch), window_s=0.1, max_requests=10)
    assert b.submit("a") == "a"
    assert b.submit("b") == "b"
    assert rounds == [["a"], ["b"]]


def test_a_failing_round_reaches_every_submitter():
    def boom(batch):
        raise ValueError("engine failed")

    b = RoundBatcher(boom, window_s=0.3, max_requests=10)
    results, errors = submit_all(b, range(3), stagger_s=0.01)
    assert not results and len(errors) == 3 and all("engine failed" in str(e) for e in errors.values())
    with pytest.raises(ValueError):
        RoundBatcher(lambda b: b, window_s=-1, max_requests=1)

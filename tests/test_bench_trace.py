"""The trace replay's parsing and batching (rlli.commands.bench_trace); the replay itself is a benchmark."""

import pytest

from rlli.commands.bench_trace import read_trace, rounds_of
from rlli.commands.main import main


def test_a_trace_reads_seconds_and_prompts_in_arrival_order(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# comment\n4\ta blue boat\n0\ta red house\n\n4.5\ta red house, calm\n")
    assert read_trace(p) == [(0.0, "a red house"), (4.0, "a blue boat"), (4.5, "a red house, calm")]


@pytest.mark.parametrize("text, match", [("0 a red house\n", "SECONDS<TAB>PROMPT"), ("x\ta\n", "not a number"),
                                         ("-1\ta\n", "seconds >= 0"), ("1\t \n", "a prompt"), ("# only\n", "no requests")])
def test_bad_traces_say_which_line(tmp_path, text, match):
    p = tmp_path / "t.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_trace(p)


def test_rounds_close_after_the_window_or_at_the_cap():
    trace = [(0.0, "a"), (1.0, "b"), (3.5, "c"), (4.0, "d"), (4.1, "e"), (4.2, "f"), (9.0, "g")]
    assert [[p for _, p in r] for r in rounds_of(trace, 3.0, 8)] == [["a", "b"], ["c", "d", "e", "f"], ["g"]]
    assert [[p for _, p in r] for r in rounds_of(trace, 3.0, 2)] == [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]


def test_the_command_reports_a_bad_trace_without_a_traceback(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text("nonsense\n")
    assert main(["bench", "sharing", "--trace", str(p), "--json"]) == 2
    assert "trace line 1" in capsys.readouterr().err


def test_a_trace_may_name_the_tab_each_request_came_from(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("0\tparticipate\ta red house\n1.5\tshared-round\ta blue boat\n")
    assert read_trace(p) == [(0.0, "a red house"), (1.5, "a blue boat")]


def test_the_trace_replay_runs_the_app_round_and_reuses_trunks_across_rounds(tmp_path, tiny_rule_path, monkeypatch,
                                                                           capsys):
    """A short replay on the shipped model at 2 steps with a rule that lets light edits share: the second round's
    lone request starts from the first round's trunk (no second pipeline: every round is run_round)."""
    import json

    trace = tmp_path / "t.txt"
    trace.write_text("0\ta red house on grass at sunset\n10\ta red house on the grass at sunset\n")
    monkeypatch.setenv("RLLI_FORK_RULE", str(tiny_rule_path))
    assert main(["bench", "sharing", "--trace", str(trace), "--steps", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["rounds"] == 2 and r["cache_hits"] == 1 and r["hits"][0]["from_prompt"] == "a red house on grass at sunset"
    assert r["calls_shared"] < r["calls_independent"] + r["calls_cache_probe"] + r["calls_fork_decision"]
    assert r["saved_across_rounds"] > -1 and r["saved_within_rounds"] <= 0

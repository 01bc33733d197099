"""The command line: most tests call ``main([...])`` in-process; one runs a real interpreter."""

import io
import json
import os
import subprocess
import sys

import pytest

from rlli.commands.main import main

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(capsys, monkeypatch, *args, stdin: bytes | str = b""):
    """``python -m rlli ARGS`` in-process: (exit code, stdout, stderr)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse refusing a flag
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_commands_in_a_real_interpreter():
    out = subprocess.run([sys.executable, "-m", "rlli", "--help"], capture_output=True, text=True, env=ENV,
                         timeout=300)
    assert out.returncode == 0
    for cmd in ("group", "bench", "calibrate", "train", "eval", "serve", "settings"):
        assert cmd in out.stdout


def test_group_json_from_stdin(capsys, monkeypatch):
    prompts = "a red house on grass\na red house on the grass\n\nthree purple cars on a street\n"
    code, out, err = run(capsys, monkeypatch, "group", "--threshold", "0.8", "--json", stdin=prompts)
    assert code == 0, err
    groups = json.loads(out)
    assert [sorted(g["members"]) for g in groups] == [["a red house on grass", "a red house on the grass"],
                                                      ["three purple cars on a street"]]
    assert groups[0]["anchor"] in groups[0]["members"]


def test_group_refuses_empty_input_with_a_message(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "group", stdin="\n\n")
    assert code == 2 and "at least one prompt" in err


def test_settings_come_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("RLLI_STEPS", "7")
    monkeypatch.setenv("RLLI_PORT", "9999")
    code, out, _ = run(capsys, monkeypatch, "settings")
    s = json.loads(out)
    assert code == 0 and s["steps"] == 7 and s["port"] == 9999


@pytest.mark.parametrize("args, says", [
    (("group", "--threshold", "5"), "[-1, 1]"),
    (("group", "--threshold", "nan"), "[-1, 1]"),
    (("group", "--threshold", "high"), "expected a number"),
    (("bench", "sharing", "--repeats", "0"), "at least 1"),
    (("bench", "model", "--seeds", "-3"), "at least 1"),
    (("calibrate", "--anchors", "0"), "at least 1"),
    (("calibrate", "--steps", "0"), "at least 1"),
    (("calibrate", "--anchors", "4", "--heldout", "2"), "at least 8 anchors"),
    (("train", "tiny-t2i", "--threads", "zero"), "whole number"),
    (("train", "tiny-t2i", "--seed", "-1"), "between 0 and"),
    (("agreement", "--seed", "99999999999"), "between 0 and"),
])
def test_bad_flags_are_refused_with_a_message(capsys, monkeypatch, args, says):
    code, _, err = run(capsys, monkeypatch, *args)
    assert code == 2 and "error" in err and says in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("var, value, says", [
    ("RLLI_STEPS", "lots", "RLLI_STEPS"),
    ("RLLI_GROUP_THRESHOLD", "5", "RLLI_GROUP_THRESHOLD"),
    ("RLLI_DEVICE", "gpu0", "RLLI_DEVICE"),
    ("RLLI_DEVICE", "cuda", "no CUDA GPU"),
    ("RLLI_SCHEDULER", "pndm", "RLLI_SCHEDULER"),
])
def test_bad_settings_get_one_clear_message(capsys, monkeypatch, var, value, says):
    pytest.importorskip("torch")
    import torch

    if value == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv(var, value)
    code, _, err = run(capsys, monkeypatch, "settings")
    assert code == 2 and err.startswith("error: ") and says in err, err


def test_a_text_model_that_cannot_load_gets_a_message(capsys, monkeypatch, tmp_path):
    from rlli.text import get_encoder

    get_encoder.cache_clear()
    monkeypatch.setenv("RLLI_TEXT_MODEL", str(tmp_path / "no-such-model"))
    code, _, err = run(capsys, monkeypatch, "group", stdin="a red house\n")
    assert code == 2 and "RLLI_TEXT_MODEL" in err and "Traceback" not in err, err


def test_bad_bytes_get_a_message(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "group", stdin=b"\xff\xfe\x00bad")
    assert code == 2 and "UTF-8" in err


def test_app_entry_prints_the_same_message_for_a_bad_setting():
    out = subprocess.run([sys.executable, "app.py"], capture_output=True, text=True, timeout=300,
                         env={**ENV, "RLLI_PORT": "http"}, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 2 and out.stderr.startswith("error: invalid setting") and "RLLI_PORT" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_bench_sharing_json_on_a_prompts_file(capsys, monkeypatch, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a red house on grass at sunset\na red house on the grass at sunset\na blue boat at sea\n")
    code, out, err = run(capsys, monkeypatch, "bench", "sharing", "--prompts", str(f), "--steps", "6",
                         "--repeats", "2", "--json")
    assert code == 0, err
    r = json.loads(out)
    for key in ("calls_shared", "calls_independent", "wall_shared_s", "wall_independent_s", "quality_shared",
                "quality_independent", "quality_metric"):
        assert key in r
    assert r["calls_independent"] == 3 * 6 * 2
    code, _, err = run(capsys, monkeypatch, "bench", "sharing", "--prompts", str(tmp_path / "nope.txt"))
    assert code == 2 and "error" in err and "nope.txt" in err


def test_the_settings_command_never_shows_secrets(capsys, monkeypatch):
    monkeypatch.setenv("RLLI_LLM_API_KEY", "sk-live-abcdef")
    monkeypatch.setenv("RLLI_ADMIN_TOKEN", "admin-tok-123")
    monkeypatch.setenv("RLLI_DATABASE_URL", "postgresql+psycopg://rlli:pa55word@db.example:5432/rlli")
    code, out, _ = run(capsys, monkeypatch, "settings")
    assert code == 0
    for secret in ("sk-live-abcdef", "admin-tok-123", "pa55word"):
        assert secret not in out
    assert json.loads(out)["database_url"] == "postgresql+psycopg://rlli:***@db.example:5432/rlli"
    from rlli.config import Settings

    assert "pa55word" in Settings().database_url, "the working settings keep the real password"

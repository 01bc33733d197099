"""The personas commands, in-process: generate, judge, personas list|sample|tipi|fidelity."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from rlli.commands.main import main


def run(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse refusing a flag
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"


def test_list_and_sample(capsys):
    code, out, _ = run(capsys, "personas", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 11 and rows[0]["name"] == "open" and rows[0]["openness"] == 0.98
    code, out, _ = run(capsys, "personas", "sample", "3", "--seed", "5", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["sampled-5-0", "sampled-5-1", "sampled-5-2"]
    assert run(capsys, "personas", "sample", "0")[0] == 2


def test_tipi_scores_and_refuses_bad_answers(capsys):
    code, out, _ = run(capsys, "personas", "tipi", "5", "2", "6", "5", "7", "3", "6", "2", "3", "1", "--json")
    assert code == 0 and json.loads(out) == {"openness": 1.0, "conscientiousness": 0.8333, "extraversion": 0.6667,
                                             "agreeableness": 0.8333, "neuroticism": 0.6667}
    code, _, err = run(capsys, "personas", "tipi", "5", "2", "x")
    assert code == 2 and err.startswith("error: the TIPI has 10 items; got 3")


def test_fidelity_json_keys_with_the_trait_respondent(capsys):
    code, out, _ = run(capsys, "personas", "fidelity", "--judge", "trait", "--profiles", "40", "--behavioural", "8",
                       "--json")
    r = json.loads(out)
    assert code == 0 and {"profiles", "per_trait", "overall_r", "mtmm_gap", "behavioural", "valid_rate", "backend",
                          "model"} <= set(r)
    assert r["backend"] == "trait" and r["valid_rate"] == 1.0 and r["overall_r"] > 0.6 and r["profiles"] == 40
    assert set(r["per_trait"]["openness"]) == {"r", "low", "high", "n"} and r["behavioural"]["profiles"] == 8
    assert run(capsys, "personas", "fidelity", "--profiles", "2")[0] == 2
    assert run(capsys, "personas", "fidelity", "--judge", "trait", "--norms", "nope", "--behavioural", "0")[0] == 2


def test_fidelity_against_a_dead_endpoint_reports_no_valid_answers(capsys, monkeypatch):
    monkeypatch.setenv("RLLI_LLM_BASE_URL", dead_url())
    monkeypatch.setenv("RLLI_LLM_MODEL", "m")
    monkeypatch.setenv("RLLI_LLM_RETRIES", "0")
    code, out, _ = run(capsys, "personas", "fidelity", "--profiles", "4", "--behavioural", "0", "--json")
    r = json.loads(out)
    assert code == 0 and r["valid_rate"] == 0.0 and r["overall_r"] is None and "cannot reach" in r["failures"][0]


@pytest.fixture
def image_file(tmp_path):
    from rlli.diffusion.tiny import world
    from rlli.personas.describe import png_bytes

    scene = world.Scene("night", "clear", "water", "boat", "blue", "two", "left", "neutral", "calm")
    path = tmp_path / "boats.png"
    path.write_bytes(png_bytes((world.render(scene, np.random.default_rng(1)) * 255 + 0.5).astype(np.uint8)))
    return path


def test_judge_with_a_dead_endpoint_gives_a_status_and_no_score(capsys, monkeypatch, image_file):
    monkeypatch.setenv("RLLI_LLM_BASE_URL", dead_url())
    monkeypatch.setenv("RLLI_LLM_MODEL", "m")
    code, out, _ = run(capsys, "judge", "--persona", "critical", "--prompt", "two blue boats on a lake",
                       "--image", str(image_file), "--json")
    r = json.loads(out)
    assert code == 1 and set(r) == {"score", "reason", "status", "backend", "model", "latency_s", "perception", "told",
                                    "told_hash", "extras"}
    assert r["score"] is None and r["status"] == "unavailable" and r["backend"] == "llm"


def test_judge_with_the_trait_judge(capsys, image_file):
    pytest.importorskip("rlli.personas.trait_judge", reason="the trait judge has not landed")
    code, out, _ = run(capsys, "judge", "--judge", "trait", "--persona", "neurotic", "--prompt", "two blue boats",
                       "--image", str(image_file), "--delay", "30", "--json")
    r = json.loads(out)
    assert code == 0 and r["status"] == "ok" and r["backend"] == "trait" and 1 <= r["score"] <= 10


@pytest.mark.parametrize("args, message", [
    (("--persona", "nobody", "--prompt", "a red car"), "no persona called 'nobody'; choose one of: open"),
    (("--persona", "open", "--prompt", "  \x00 "), "the prompt is empty"),
    (("--persona", "open", "--prompt", "x" * 400), "the prompt has 400 characters"),
    (("--persona", "open", "--prompt", "a red car", "--quality", "2"), "--quality must be in [0, 1]"),
    (("--persona", "open", "--prompt", "a red car", "--delay", "-1"), "--delay between 0"),
    (("--persona", "open", "--prompt", "a red car", "--image", "/nonexistent.png"), "cannot read /nonexistent.png"),
])
def test_judge_refuses_bad_input_clearly(capsys, args, message):
    code, out, err = run(capsys, "judge", *args)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err


def test_judge_refuses_a_file_that_is_not_an_image(capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    code, _, err = run(capsys, "judge", "--persona", "open", "--prompt", "a red car", "--image", str(bad))
    assert code == 2 and "not a readable image" in err


def test_generate_writes_a_png_and_the_same_seed_gives_the_same_image(capsys, tmp_path):
    from PIL import Image

    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for path, seed in ((a, "4"), (b, "4"), (c, "5")):
        code, out, err = run(capsys, "generate", "a red house on grass", "--seed", seed, "--out", str(path))
        assert code == 0, err
    assert np.asarray(Image.open(a)).shape == (64, 64, 3)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    code, _, err = run(capsys, "generate", "   ", "--out", str(tmp_path / "d.png"))
    assert code == 2 and err.startswith("error: ") and not (tmp_path / "d.png").exists()



import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def rlli(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "rlli", *args], input=stdin, capture_output=True, text=True,
                          env=ENV, timeout=600)


def test_help_lists_the_commands():
    out = rlli("--help")
    assert out.returncode == 0
    for cmd in ("group", "bench", "calibrate", "train", "serve", "settings"):
        assert cmd in out.stdout


def test_group_json_from_stdin():
    prompts = "a red house on grass\na red house on the grass\n\nthree purple cars on a street\n"
    out = rlli("group", "--threshold", "0.8", "--json", stdin=prompts)
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)
    assert [sorted(g["members"]) for g in groups] == [["a red house on grass", "a red house on the grass"],
                                                      ["three purple cars on a street"]]
    assert groups[0]["anchor"] in groups[0]["members"]


def test_group_refuses_empty_input_with_a_message():
    out = rlli("group", stdin="\n\n")
    assert out.returncode == 2 and "at least one prompt" in out.stderr


def test_settings_come_from_the_environment():
    out = subprocess.run([sys.executable, "-m", "rlli", "settings"], capture_output=True, text=True,
                         env={**ENV, "RLLI_STEPS": "7", "RLLI_PORT": "9999"})
    s = json.loads(out.stdout)
    assert s["steps"] == 7 and s["port"] == 9999


@pytest.mark.slow
def test_bench_sharing_json_on_a_prompts_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a red house on grass at sunset\na red house on the grass at sunset\na blue boat at sea\n")
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"sim_edges": [-1.0, 0.9, 1.0001], "fractions": [0.0, 0.5, 1.0],
                                 "quality": [[1.0, 0.5, 0.2], [1.0, 1.0, 0.5]]}))
    out = subprocess.run([sys.executable, "-m", "rlli", "bench", "sharing", "--prompts", str(f), "--steps", "6", "--repeats", "2",
                          "--group-threshold", "0.9", "--json"], capture_output=True, text=True, timeout=600,
                         env={**ENV, "RLLI_CALIBRATION": str(table)})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    for key in ("calls_shared", "calls_independent", "wall_shared_s", "wall_independent_s", "quality_shared",
                "quality_independent", "quality_metric"):
        assert key in r
    assert r["calls_independent"] == 3 * 6 * 2
    assert r["calls_shared"] == r["calls_independent"] - 2 * 3  # the paraphrase pair shares 3 of 6 steps
    missing = rlli("bench", "sharing", "--prompts", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "error" in missing.stderr


def test_bad_settings_and_bad_bytes_get_messages():
    out = subprocess.run([sys.executable, "-m", "rlli", "group"], input=b"\xff\xfe\x00bad", capture_output=True,
                         env=ENV, timeout=120)
    assert out.returncode == 2 and b"UTF-8" in out.stderr
    out = subprocess.run([sys.executable, "-m", "rlli", "settings"], capture_output=True, text=True,
                         env={**ENV, "RLLI_STEPS": "lots"}, timeout=120)
    assert out.returncode == 2 and "invalid setting" in out.stderr and "steps" in out.stderr
    assert "Traceback" not in out.stderr

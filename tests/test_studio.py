"""The app's session layer without a browser: rounds, ratings, agents, bad input and a dead or locked backend."""

import sqlite3
import threading

import pytest

from rlli.config import Settings
from rlli.personas.judge import BigFive
from rlli.session.studio import Studio, StudioError, Visitor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    d = tmp_path_factory.mktemp("studio")
    s = Settings(database_url=f"sqlite:///{d / 'db.sqlite3'}", data_dir=d / "data", persona_judge="trait",
                 round_window_s=0.2)
    return Studio(s)


ME = Visitor("browser:test-visitor-0001", BigFive(0.9, 0.2, 0.5, 0.5, 0.7), "tipi")


def human_ratings(studio) -> list[tuple]:
    f = studio.store().rating_frame()
    return sorted(map(tuple, f[f["rater_kind"] == "human"][["rater_id", "generation_id", "score"]].values.tolist()))


def test_a_person_gets_an_image_with_its_allocation_and_agents_rate_it_only_once_it_exists(studio):
    [d] = studio.participate(ME, "a red house on grass at sunset", seed=11)
    assert d.image.shape == (64, 64, 3) and d.generation_id > 0 and d.policy == "gddpg"
    assert d.delay_s > 0 and 0 <= d.bandwidth_share <= 1 and d.shared_steps + (d.steps - d.shared_steps) == d.steps
    stored, message = studio.rate(ME, d.generation_id, 7, "nice <b>house</b>")
    assert stored, message
    scores = studio.agent_scores(d.generation_id)
    names = [s.persona for s in scores]
    assert names[0] == "you (agent)" and scores[0].as_you and len(names) == 1 + len(studio.presets())
    assert all(s.rating.status == "ok" and 1 <= s.rating.score <= 10 for s in scores)
    assert (studio.store().participant_id("human", ME.key), d.generation_id, 7) in human_ratings(studio)


def test_one_rating_per_person_and_image(studio):
    [d] = studio.participate(ME, "two blue boats on a lake at night", seed=12)
    assert studio.rate(ME, d.generation_id, 4)[0]
    stored, message = studio.rate(ME, d.generation_id, 9)
    assert not stored and "already rated" in message
    mine = [r for r in human_ratings(studio) if r[1] == d.generation_id]
    assert len(mine) == 1 and mine[0][2] == 4


@pytest.mark.parametrize("raw, says", [
    ("", "Enter a prompt"), ("   \u200b\u0007  ", "Enter a prompt"), ("x" * 10_000, "10000 characters"),
    ("a" * 301, "limit is 300"),
])
def test_bad_prompts_get_a_message_and_store_nothing(studio, raw, says):
    def stored():  # agents of earlier rounds may still be adding their ratings in the background
        return {k: v for k, v in studio.store().counts().items() if k != "ratings"}

    before = stored()
    with pytest.raises(StudioError, match=says):
        studio.participate(ME, raw)
    assert stored() == before


def test_markup_and_odd_unicode_are_kept_as_plain_text(studio):
    [d] = studio.participate(ME, "<script>alert(1)</script> a ｒｅｄ house\u202e on grass", seed=13)
    assert d.prompt == "<script>alert(1)</script> a red house on grass"  # NFKC, controls removed, markup as text


def test_a_prompt_outside_the_embedded_world_gets_a_notice(studio):
    [d] = studio.participate(ME, "quantum chromodynamics lecture notes", seed=14)
    assert any("knows none of the words" in n for n in d.notices)
    [d] = studio.participate(ME, "a green tree on grass", seed=15)
    assert not any("knows none" in n for n in d.notices)


@pytest.mark.parametrize("score", [0, 11, "seven", None])
def test_bad_scores_are_refused(studio, score):
    with pytest.raises(StudioError):
        studio.rate(ME, 1, score)


def test_admin_functions_need_the_token(studio, tmp_path):
    with pytest.raises(StudioError, match="off"):
        studio.admin_export("anything")
    s = Settings.model_validate({**studio.settings.model_dump(), "admin_token": "s3cret-token"})
    admin = Studio(s, store=studio.store(), service=studio.service)
    with pytest.raises(StudioError, match="Wrong admin token"):
        admin.admin_export("guess")
    path = admin.admin_export("s3cret-token", "csv")
    assert path.suffix == ".zip" and path.stat().st_size > 0


def test_a_locked_database_gives_a_message_and_loses_nothing(studio, tmp_path):
    d = tmp_path / "locked"
    s = Settings(database_url=f"sqlite:///{d / 'db.sqlite3'}", data_dir=d / "data", persona_judge="trait",
                 round_window_s=0.1, database_timeout_s=0.5)
    locked = Studio(s, service=studio.service)
    [first] = locked.participate(ME, "a yellow car on a street", seed=16)
    assert locked.rate(ME, first.generation_id, 6)[0]
    con = sqlite3.connect(d / "db.sqlite3", timeout=0)
    con.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        with pytest.raises(StudioError, match="could not be stored"):
            locked.rate(Visitor("browser:someone-else-01"), first.generation_id, 3)
    finally:
        con.rollback()
        con.close()
    assert [r[2] for r in human_ratings(locked)] == [6]


def test_a_dead_llm_endpoint_keeps_the_persons_rating_and_records_agent_failures(studio, tmp_path):
    d = tmp_path / "dead"
    s = Settings(database_url=f"sqlite:///{d / 'db.sqlite3'}", data_dir=d / "data", persona_judge="llm",
                 llm_base_url="http://127.0.0.1:9/v1", llm_model="none", llm_timeout_s=2, llm_retries=0,
                 round_window_s=0.1)
    dead = Studio(s, service=studio.service)
    [d1] = dead.participate(ME, "a purple mountain in the desert", seed=17)
    assert dead.rate(ME, d1.generation_id, 8)[0]
    scores = dead.agent_scores(d1.generation_id)
    assert scores and all(sc.rating.score is None and sc.rating.status != "ok" for sc in scores)
    assert [r[2] for r in human_ratings(dead)] == [8]
    with pytest.raises(StudioError, match="could not write a prompt"):
        dead.persona_round(["open"])


def test_concurrent_visitors_share_one_round(studio):
    out = {}

    def go(i):
        out[i] = studio.participate(Visitor(f"browser:concurrent-{i:04d}"), "a red house on grass at sunset", seed=i)[0]

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len({d.round_no for d in out.values()}) == 1, "requests within the window must join one round"
    assert {d.group_size for d in out.values()} == {3}


def test_every_person_in_a_round_hears_its_phases_in_order(studio):
    """The progress bar: each waiting person (not only the one whose thread runs the round) hears every phase."""
    from rlli.session.studio import ROUND_PHASES

    heard: dict[int, list[str]] = {0: [], 1: []}

    def go(i):
        studio.participate(Visitor(f"browser:phases-{i:04d}"), "a blue boat on a lake", seed=i,
                           on_phase=heard[i].append)

    threads = [threading.Thread(target=go, args=(i,)) for i in heard]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert heard[0] == heard[1] == list(ROUND_PHASES)


def test_a_failing_progress_listener_does_not_fail_the_round(studio):
    def broken(name):
        raise RuntimeError("the page went away")

    assert studio.participate(Visitor("browser:phases-broken"), "a red car", seed=3, on_phase=broken)[0].image is not None


def test_bench_round_reports_every_phase_and_the_naive_way(tmp_path):
    from rlli.commands.bench import bench_round

    r = bench_round(Settings(persona_judge="trait", round_window_s=0.1), personas=2, store_dir=tmp_path)
    assert r["requests"] == 3 and r["ratings"] == 1 + len(Studio(Settings()).presets()) + 2
    assert set(r["phases"]) >= {"authoring", "grouping", "allocation", "fork_decision", "generation", "judging",
                                "storage"}
    assert r["total_s"] >= sum(v for k, v in r["phases"].items() if k in ("generation", "judging"))
    assert r["independent_generation_s"] > 0 and r["dominant_phase"] in r["phases"]


def test_one_address_is_rate_limited_and_others_are_not(studio):
    s = Settings.model_validate({**studio.settings.model_dump(), "rate_limit_per_min": 2})
    limited = Studio(s, store=studio.store(), service=studio.service)
    for seed in (21, 22):
        limited.participate(ME, "a red car on a street", seed=seed, address="203.0.113.7")
    with pytest.raises(StudioError, match="at most 2 a minute"):
        limited.participate(ME, "a red car on a street", seed=23, address="203.0.113.7")
    limited.participate(ME, "a red car on a street", seed=24, address="198.51.100.1")
    with pytest.raises(StudioError, match="Enter a prompt"):  # bad input is refused before it counts
        limited.participate(ME, "", address="198.51.100.1")
    assert limited.limiter.allow("198.51.100.1") and not limited.limiter.allow("198.51.100.1")

"""The app's session layer without a browser, fast: the shipped tiny model at a few steps and the trait judge.
Rounds, ratings, agents, bad input, a dead or locked backend, batching, phases, a clean stop."""

import sqlite3
import threading

import pytest

from rlli.config import Settings
from rlli.personas.judge import BigFive
from rlli.session.studio import ROUND_PHASES, Studio, StudioError, Visitor
from rlli.store.admin import AdminError, admin_export

FAST = {"steps": 2, "persona_judge": "trait", "policy": "greedy", "round_window_s": 0.0}


def fast_settings(folder, **kw) -> Settings:
    return Settings(database_url=f"sqlite:///{folder / 'db.sqlite3'}", data_dir=folder / "data", **{**FAST, **kw})


@pytest.fixture(scope="module")
def rule_path(tiny_rule_path):
    """A fork rule for the tiny model at 2 steps, so that similar prompts really share in these rounds."""
    return tiny_rule_path


@pytest.fixture(scope="module")
def studio(tmp_path_factory, rule_path):
    s = fast_settings(tmp_path_factory.mktemp("studio"), fork_rule=rule_path)
    st = Studio(s)
    yield st
    st.close(grace_s=1.0)


ME = Visitor("browser:test-visitor-0001", BigFive(0.9, 0.2, 0.5, 0.5, 0.7), "tipi")


def human_ratings(studio) -> list[tuple]:
    f = studio.store().rating_frame()
    return sorted(map(tuple, f[f["rater_kind"] == "human"][["rater_id", "generation_id", "score"]].values.tolist()))


def test_a_person_gets_an_image_with_its_allocation_and_agents_rate_it_only_once_it_exists(studio):
    [d] = studio.participate(ME, "a red house on grass at sunset", seed=11)
    assert d.image.shape == (64, 64, 3) and d.generation_id > 0 and d.policy == "greedy"
    u = d.result.allocation
    assert u.delay_s > 0 and 0 <= u.bandwidth_share <= 1 and d.steps == 2
    assert d.group.members == (0,) and d.fork_step == 0  # alone in its round: its own seed and steps
    row = studio.store().generations([d.generation_id])[0]
    assert row.prompt == d.prompt and row.delay_s == pytest.approx(u.delay_s)
    stored, message = studio.rate(ME, d.generation_id, 7, "nice <b>house</b>")
    assert stored, message
    scores = studio.agent_scores(d.generation_id)
    names = [s.persona for s in scores]
    assert names[0] == "you (agent)" and scores[0].as_you and len(names) == 1 + len(studio.presets())
    assert all(s.rating.status == "ok" and 1 <= s.rating.score <= 10 for s in scores)
    assert (studio.store().participant_id("human", ME.key), d.generation_id, 7) in human_ratings(studio)
    f = studio.store().rating_frame()
    agents = f[(f["generation_id"] == d.generation_id) & (f["rater_kind"] == "agent")]
    # what each agent perceived and was told is stored with its rating (the trait judge reads the pixels' look)
    assert set(agents["perception"]) == {scores[0].rating.perception} and all(agents["told"].str.len() > 0)
    assert list(agents["told"])[0] == scores[0].rating.told


def test_a_visitor_can_rate_images_others_received_so_images_gather_several_peoples_ratings(studio):
    other = Visitor("browser:another-visitor-01", BigFive(0.3, 0.6, 0.5, 0.5, 0.2), "tipi")
    [d] = studio.participate(ME, "a yellow car on a street in the rain", seed=41)
    assert studio.rate(ME, d.generation_id, 6)[0]
    seen = set()
    while (found := studio.next_to_rate(other)) is not None:  # every image people rated, each once
        gid, prompt, image = found
        assert gid not in seen and image.shape == (64, 64, 3)
        seen.add(gid)
        assert studio.rate(other, gid, 5)[0]
    assert d.generation_id in seen
    f = studio.store().rating_frame()
    people = f[(f["generation_id"] == d.generation_id) & (f["rater_kind"] == "human")]
    assert len(people) == 2  # two people's ratings on one image: the human-human ceiling can be measured
    assert studio.next_to_rate(ME) is None or studio.next_to_rate(ME)[0] != d.generation_id  # never one's own


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
    with pytest.raises(AdminError, match="off"):
        admin_export(studio.store(), "", "anything")
    with pytest.raises(AdminError, match="Wrong admin token"):
        admin_export(studio.store(), "s3cret-token", "guess")
    path = admin_export(studio.store(), "s3cret-token", "s3cret-token", "csv")
    assert path.suffix == ".zip" and path.stat().st_size > 0


def test_a_locked_database_gives_a_message_and_loses_nothing(studio, tmp_path):
    d = tmp_path / "locked"
    locked = Studio(fast_settings(d, database_timeout_s=0.5))
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
    dead = Studio(fast_settings(d, persona_judge="llm", llm_base_url="http://127.0.0.1:9/v1", llm_model="none",
                                llm_timeout_s=2, llm_retries=0))
    [d1] = dead.participate(ME, "a purple mountain in the desert", seed=17)
    assert dead.rate(ME, d1.generation_id, 8)[0]
    scores = dead.agent_scores(d1.generation_id)
    assert scores and all(sc.rating.score is None and sc.rating.status != "ok" for sc in scores)
    assert [r[2] for r in human_ratings(dead)] == [8]
    # the failed agent ratings are placeholders that rejudge retries (one rule with live rounds)
    from rlli.session.rejudge import plan

    store = dead.store()
    todo, _, done = plan(store, "llm", "none", dead.presets())
    assert done == 0 and len(todo) == len(scores) == 1 + len(dead.presets())
    # a persona round never waits for the dead LLM: its prompt is composed from the persona's preferences
    [p] = dead.persona_round(["open"])
    assert p.written_by.startswith("composed") and p.prompt


def _together(studio, jobs):
    """Run each job in its own thread (as browser sessions do) and wait for all of them."""
    out, errors = {}, {}

    def run(i, job):
        try:
            out[i] = job()
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_invited_personas_write_their_version_of_the_visitors_prompt_and_share_its_trunk(studio):
    from rlli.diffusion.tiny.world import parse_prompt

    me, *guests = studio.participate(ME, "a red house on grass at sunset", invite=["open", "critical", "neurotic"], seed=31)
    stated = parse_prompt(me.prompt)
    for g in guests:
        assert g.written_by.startswith("composed") and g.prompt.startswith(me.prompt)
        assert all(parse_prompt(g.prompt).get(k) == v for k, v in stated.items())  # the visitor's subject, kept
        assert g.group is me.group or g.group.index == me.group.index
    assert len(me.group.members) == 4 and sum(g.fork_step > 0 for g in [me, *guests] if not g.is_anchor) >= 1


def test_a_lone_visitor_can_start_from_a_trunk_kept_from_an_earlier_round(tmp_path, rule_path):
    from rlli.ui.participate_tab import journey

    st = Studio(fast_settings(tmp_path, fork_rule=rule_path))
    try:
        [first] = st.participate(ME, "a red house on grass at sunset", seed=51)
        [second] = st.participate(Visitor("browser:later-visitor-01"), "a red house on the grass at sunset", seed=52)
    finally:
        st.close(grace_s=1.0)
    assert first.result.output.start_origin is None
    origin = second.result.output.start_origin
    assert origin is not None and origin["prompt"] == first.prompt and second.result.output.foreign_steps > 0
    assert second.result.output.noise_seed == 51  # seed provenance stays exact: the earlier request's noise
    assert "shared with a request from" in journey(second)
    acc = st.recent[0].report.accounting
    assert acc.trunk_cache["hits"] >= 1 and acc.passes_trunk_probe > 0


def test_concurrent_visitors_share_one_round_and_its_steps(tmp_path, rule_path):
    """The round closes when its third request arrives (the window is a minute: it closes on the count, no timing
    involved); the three similar prompts form one group and the members share the anchor's steps."""
    st = Studio(fast_settings(tmp_path, fork_rule=rule_path, round_window_s=60.0, round_max_requests=3))
    try:
        prompts = ["a red house on grass at sunset", "a red house on the grass at sunset", "red house on a lawn at sunset"]
        out = _together(st, [lambda i=i, p=p: st.participate(Visitor(f"browser:concurrent-{i:04d}"), p, seed=i)[0]
                             for i, p in enumerate(prompts)])
        assert len({d.round_no for d in out.values()}) == 1 and st.backend.batcher.rounds_run == 1
        assert {len(d.group.members) for d in out.values()} == {3}
        assert sum(d.fork_step > 0 and not d.is_anchor for d in out.values()) >= 1, "nobody shared"
        [view] = st.recent
        assert len(view.report.requests) == 3 and len(view.deliveries) == 3
        ids = {d.generation_id for d in out.values()}
        assert len(ids) == 3 and ids == {d.generation_id for d in view.deliveries}  # stored once, all of it
        assert st.store().counts()["rounds"] == 1
    finally:
        st.close(grace_s=1.0)


def test_every_person_in_a_round_hears_its_phases_in_order(tmp_path):
    """The progress bar: each waiting person (not only the one whose thread runs the round) hears every phase."""
    st = Studio(fast_settings(tmp_path, round_window_s=60.0, round_max_requests=2))
    heard: dict[int, list] = {0: [], 1: []}
    try:
        _together(st, [lambda i=i: st.participate(Visitor(f"browser:phases-{i:04d}"), "a blue boat on a lake", seed=i,
                                                  on_phase=heard[i].append) for i in heard])
    finally:
        st.close(grace_s=1.0)
    assert heard[0] == heard[1] == list(ROUND_PHASES)


def test_a_failing_progress_listener_does_not_fail_the_round(studio):
    def broken(name):
        raise RuntimeError("the page went away")

    assert studio.participate(Visitor("browser:phases-broken"), "a red car", seed=3, on_phase=broken)[0].image is not None


def test_the_shared_round_tab_runs_through_the_session_layer_and_is_stored(studio):
    before = studio.store().counts()["rounds"]
    view = studio.shared_round("a red house on grass at sunset\na red house on the grass at sunset\na blue car", 4,
                               compare=True)
    r = view.report
    assert [q.seed for q in r.requests] == [4, 5, 6] and r.compared
    assert studio.store().counts()["rounds"] == before + 1 and studio.recent[0] is view
    with pytest.raises(StudioError, match="at least one prompt"):
        studio.shared_round("\n\n", 0)


def test_a_full_agent_backlog_records_pending_ratings_and_says_so(tmp_path):
    from rlli.session.agents import BUSY

    st = Studio(fast_settings(tmp_path, agent_backlog=1))
    gate = threading.Event()
    real = st.judge()

    class Slow:  # a judge that rates only when the test lets it
        backend, model = real.backend, real.model

        def rate_many(self, pairs):
            gate.wait()
            return real.rate_many(pairs)

    st._judge = Slow()
    try:
        [first] = st.participate(ME, "a red house", seed=1)
        [second] = st.participate(ME, "a blue house", seed=2)  # the backlog (1) is full: pending at once
        assert st.agent_scores(second.generation_id, wait_s=0) == BUSY
        f = st.store().rating_frame()
        pending = f[(f["generation_id"] == second.generation_id) & (f["rater_kind"] == "agent")]
        assert len(pending) == 1 + len(st.presets()) and set(pending["status"]) == {"pending"}
        gate.set()
        assert [s.rating.status for s in st.agent_scores(first.generation_id)] == ["ok"] * (1 + len(st.presets()))
    finally:
        gate.set()
        st.close(grace_s=1.0)


def test_a_clean_stop_refuses_new_requests_and_records_unfinished_ratings_as_pending(tmp_path):
    st = Studio(fast_settings(tmp_path))
    gate, started = threading.Event(), threading.Event()
    real = st.judge()

    class Stuck:
        backend, model = real.backend, real.model

        def rate_many(self, pairs):
            started.set()
            gate.wait()
            return real.rate_many(pairs)

    st._judge = Stuck()
    try:
        [a] = st.participate(ME, "a red house", seed=1)
        [b] = st.participate(ME, "a green tree", seed=2)  # queued behind a, never started
        assert started.wait(60)
        out = st.close(grace_s=0.2)
        assert out == {"cancelled": 1, "finished": 0, "still_running": 1}
        with pytest.raises(StudioError, match="stopping"):
            st.participate(ME, "a red car", seed=3)
        f = st.store().rating_frame()
        agents = f[f["rater_kind"] == "agent"]
        assert set(agents["generation_id"]) == {a.generation_id, b.generation_id}
        assert set(agents["status"]) == {"pending"}
    finally:
        gate.set()


def test_bench_round_reports_every_phase_and_the_naive_way(tmp_path):
    from rlli.commands.bench import bench_round

    r = bench_round(Settings(**{**FAST, "persona_judge": "trait"}), personas=0, store_dir=tmp_path)
    assert r["requests"] == 1 and r["ratings"] == 1 + len(Studio(Settings()).presets())
    assert set(r["phases"]) >= {"authoring", "grouping", "allocation", "fork_decision", "generation", "judging",
                                "scoring"}
    assert r["person_image_s"] <= r["all_ratings_s"] and r["shared_members"] == 0 and r["passes_saved"] == 0
    assert r["total_s"] >= sum(v for k, v in r["phases"].items() if k in ("generation", "judging"))
    assert r["independent_generation_s"] > 0 and r["dominant_phase"] in r["phases"]


def test_one_address_is_rate_limited_and_others_are_not(studio):
    s = Settings.model_validate({**studio.settings.model_dump(), "rate_limit_per_min": 2})
    limited = Studio(s, store=studio.store())
    for seed in (21, 22):
        limited.participate(ME, "a red car on a street", seed=seed, address="203.0.113.7")
    with pytest.raises(StudioError, match="at most 2 a minute"):
        limited.participate(ME, "a red car on a street", seed=23, address="203.0.113.7")
    limited.participate(ME, "a red car on a street", seed=24, address="198.51.100.1")
    with pytest.raises(StudioError, match="Enter a prompt"):  # bad input is refused before it counts
        limited.participate(ME, "", address="198.51.100.1")
    assert limited.limiter.allow("198.51.100.1") and not limited.limiter.allow("198.51.100.1")


def test_a_backend_that_lost_its_replicas_is_a_message_to_the_visitor(tmp_path):
    from rlli.serve.backend import BackendUnavailable

    class Lost:  # a remote backend whose replicas all went away
        name = "lost"

        def submit(self, job, on_phase=None, compare=False):
            raise BackendUnavailable("3 engine replicas went away; please try again")

        exclusive = submit

        def close(self, timeout_s=5.0):
            pass

    st = Studio(fast_settings(tmp_path), backend=Lost())
    with pytest.raises(StudioError, match="replicas went away"):
        st.participate(ME, "a red house", seed=1)
    with pytest.raises(StudioError, match="replicas went away"):
        st.shared_round("a red house", 0)

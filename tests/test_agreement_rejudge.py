"""rejudge with the real trait judge (and a dead LLM endpoint), and the store's commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlli.commands.main import main
from rlli.config import Settings
from rlli.personas import get_judge, load_presets
from rlli.session.rejudge import RejudgeError, delivery_of, rejudge
from rlli.store import GenerationRecord, GroupRecord, ParticipantRecord, RatingRecord, RequestRecord, RoundRecord, Store


def fill(store: Store) -> list[str]:
    """Three people with a profile and one without rate the images of one round; one image nobody rated."""
    rng = np.random.default_rng(0)
    people = [store.upsert_participant(ParticipantRecord("human", f"p{i}", traits=t, instrument="tipi"))
              for i, t in enumerate([(0.9, 0.1, 0.5, 0.5, 0.2), (0.2, 0.9, 0.5, 0.5, 0.8), (0.5, 0.5, 0.9, 0.1, 0.5)])]
    people.append(store.upsert_participant(ParticipantRecord("human", "no profile")))
    n = 5
    r = RoundRecord(3, [RequestRecord(f"a red car at night {k}", k) for k in range(n)], [GroupRecord(tuple(range(n)), 0, 4)],
                    [GenerationRecord(k, 0, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 4, 16, quality=0.8 + 0.04 * k,
                                      delay_s=2.0 * k, description=f"a red car, image {k}") for k in range(n)])
    gens = store.record_round(r).generation_ids
    store.add_ratings([RatingRecord(p, g, int(rng.integers(1, 11))) for p in people for g in gens[:4]])
    store.add_rating(RatingRecord(people[0], gens[4], None, status="error", backend="human"))  # not a score
    return people


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path}/r.sqlite3", tmp_path / "data") as s:
        yield s


class Interrupting:
    """The real trait judge, interrupted (like Ctrl-C) after ``after`` ratings."""

    def __init__(self, after: int):
        self.inner, self.after, self.calls = get_judge("trait", Settings()), after, 0
        self.backend, self.model = self.inner.backend, self.inner.model

    def rate(self, persona, delivery):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner.rate(persona, delivery)


def test_rejudge_rates_what_people_rated_as_their_own_profile_and_presets(store):
    people = fill(store)
    presets = load_presets()[:2]
    judge = get_judge("trait", Settings())
    report = rejudge(store, judge, presets, progress=False)
    # 4 rated images x (3 people with a profile + 2 presets); the unrated image and the failed rating are skipped
    assert (report.generations, report.planned, report.stored, report.statuses) == (4, 20, 20, {"ok": 20})
    frame = store.rating_frame()
    agents = frame[frame.rater_kind == "agent"]
    assert len(agents) == 20 and set(agents.backend) == {"trait"} and set(agents.model) == {judge.model}
    own = agents[agents.mirrors_id.notna()]
    assert set(own.mirrors_id) == set(people[:3])
    # the agent saw what the person saw, and scored as the judge does on it
    row = own[own.mirrors_id == people[1]].iloc[0]
    gen = store.generations([int(row.generation_id)])[0]
    delivery = delivery_of(store, gen)
    assert (delivery.prompt, delivery.description, delivery.quality, delivery.delay_s) == (
        gen.prompt, gen.description, gen.quality, gen.delay_s)
    from rlli.personas import BigFive, Persona

    expected = judge.rate(Persona("own profile", BigFive(0.2, 0.9, 0.5, 0.5, 0.8), instrument="own-profile"), delivery)
    assert row.score == expected.score and (row.openness, row.conscientiousness) == (0.2, 0.9)


def test_rejudge_skips_what_the_apps_live_agents_already_rated(store):
    people = fill(store)
    judge = get_judge("trait", Settings())
    gens = [g.id for g in store.generations(rated_by_humans=True)]
    # the app's live agent for person 0 (its own name for it) already rated the first image
    live = store.upsert_participant(ParticipantRecord.agent("you (agent)", (0.9, 0.1, 0.5, 0.5, 0.2), judge.backend,
                                                            judge.model, mirrors=people[0], instrument="tipi"))
    store.add_rating(RatingRecord(live, gens[0], 5, backend=judge.backend, model=judge.model))
    report = rejudge(store, judge, [], progress=False)
    assert (report.planned, report.already_rated, report.stored) == (12, 1, 11)
    assert [r.score for r in store.ratings_for_participant(live)][0] == 5


def test_rejudge_resumes_after_an_interruption_without_duplicates(store):
    fill(store)
    presets = load_presets()[:2]
    with pytest.raises(KeyboardInterrupt):
        rejudge(store, Interrupting(after=7), presets, progress=False)
    stored_first = store.counts()["ratings"]
    again = rejudge(store, get_judge("trait", Settings()), presets, progress=False)
    assert again.already_rated == stored_first - 17 and again.stored == 20 - again.already_rated
    assert store.counts()["ratings"] == 17 + 20
    assert rejudge(store, get_judge("trait", Settings()), presets, progress=False).stored == 0


def test_an_unreachable_llm_stops_rejudge_and_stores_nothing(store):
    fill(store)
    settings = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="nobody", llm_timeout_s=2, llm_retries=0)
    judge = get_judge("llm", settings)
    with pytest.raises(RejudgeError, match="unavailable"):
        rejudge(store, judge, load_presets()[:1], progress=False)
    assert store.counts()["ratings"] == 17


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_commands_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLLI_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    monkeypatch.setenv("RLLI_DATA_DIR", str(tmp_path / "data"))
    with Store.from_settings(Settings()) as s:
        people = fill(s)
    code, out, _ = run(["rejudge", "--backend", "trait", "--personas", "own", "--json"], capsys)
    assert code == 0 and json.loads(out)["stored"] == 12
    code, out, _ = run(["agreement", "--json", "--resamples", "60", "--figures", str(tmp_path / "figs")], capsys)
    table = json.loads(out)
    assert code == 0 and table["ratings"] == 17 + 12
    overall = next(r for r in table["rows"] if r["slice"] == "overall")
    assert overall["pairing"] == "own" and overall["n_pairs"] == 12 and overall["backend"] == "trait"
    assert set(overall["statistics"]) == {"spearman", "kendall", "kappa", "alpha", "mae"}
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "agreement-bland_altman.html", "agreement-confusion.html", "agreement-scatter.html", "agreement-trait_bars.html"]
    code, out, _ = run(["export", "--format", "parquet", "--out", str(tmp_path / "ex")], capsys)
    assert code == 0 and (tmp_path / "ex" / "ratings.parquet").exists() and "29 ratings" in out
    code, _, err = run(["store", "delete-participant", people[0]], capsys)
    assert code == 2 and "--yes" in err
    code, out, _ = run(["store", "delete-participant", people[0], "--yes"], capsys)
    assert code == 0 and json.loads(out)["participants"] == 2  # the person and the agent given their profile
    code, _, err = run(["rejudge", "--backend", "trait", "--personas", "Nobody-Such"], capsys)
    assert code == 2 and err.startswith("error:")
    monkeypatch.setenv("RLLI_DATABASE_URL", "postgresql://u:hunter2@127.0.0.1:1/x")
    monkeypatch.setenv("RLLI_DATABASE_TIMEOUT_S", "2")
    code, _, err = run(["agreement"], capsys)
    assert code == 2 and "cannot open the database" in err and "hunter2" not in err


def test_bench_store_command_prints_its_figures(capsys):
    code, out, _ = run(["bench", "store", "--threads", "2", "--ratings", "30", "--naive-ratings", "10", "--batch", "10",
                        "--json"], capsys)
    r = json.loads(out)
    assert code == 0 and r["engine"] == "sqlite"
    assert (r["expected"], r["found"], r["naive_expected"], r["naive_found"]) == (60, 60, 20, 20)
    assert r["duplicates_rejected"] == r["duplicates_attempted"] == 60
    assert r["per_second"] > 0 and r["per_second_naive"] > 0


def test_rejudge_adds_the_shuffled_profile_control_and_the_analysis_pairs_it(store):
    from rlli.analysis.agreement import pair_ratings

    people = fill(store)
    judge = get_judge("trait", Settings())
    report = rejudge(store, judge, [], own=True, shuffled=True, progress=False)
    # 4 rated images x 3 people with a profile; each person's control is another person's mirror, which here
    # rated the same images anyway (everyone rated all four), so no extra agent is needed: 12 ratings
    assert report.stored == 4 * 3
    frame = store.rating_frame()
    agents = frame[frame["rater_kind"] == "agent"]
    assert set(agents["mirrors_id"]) == set(people[:3])
    pairs = pair_ratings(frame, shuffled=True)
    shuffled = pairs[pairs["pairing"] == "shuffled"]
    assert len(shuffled) >= 4 * 3
    again = rejudge(store, judge, [], own=True, shuffled=True, progress=False)
    assert again.stored == 0 and again.already_rated == 12  # resumable: the same partners, nothing twice


def test_the_shuffled_control_adds_agents_where_the_partner_did_not_rate_the_image(store):
    people = fill(store)
    # a fourth person with a profile rates only the last image people rated
    late = store.upsert_participant(ParticipantRecord("human", "late", traits=(0.1, 0.2, 0.3, 0.4, 0.5)))
    gens = [g.id for g in store.generations(rated_by_humans=True)]
    store.add_rating(RatingRecord(late, gens[0], 5))
    judge = get_judge("trait", Settings())
    plain = rejudge(store, judge, [], own=True, progress=False).stored
    extra = rejudge(store, judge, [], own=True, shuffled=True, progress=False).stored
    assert plain == 4 * 3 + 1 and extra > 0  # the control needed agents the own-profile pass did not make
    frame = store.rating_frame()
    assert set(frame[frame["rater_kind"] == "agent"]["mirrors_id"]) == {*people[:3], late}

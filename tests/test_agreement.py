"""Agreement analytics on ratings read back from a real store (SQLite; PostgreSQL where scripts/postgres.sh ran)."""

from __future__ import annotations

import krippendorff
import numpy as np
import plotly.graph_objects as go
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from rlli.analysis import agreement_table, estimate, format_table, pair_ratings
from rlli.analysis import figures as figs
from rlli.store import GenerationRecord, GroupRecord, ParticipantRecord, RatingRecord, RequestRecord, RoundRecord, Store
from rlli.store.testing import ENGINES, database_url, postgres_skip_reason

TRAITS = [(0.9, 0.2, 0.5, 0.5, 0.1), (0.1, 0.8, 0.5, 0.5, 0.9), (0.7, 0.7, 0.2, 0.6, 0.3), (0.3, 0.4, 0.9, 0.2, 0.6)]
JUDGE = ("trait", "p-v1")


def fill(store: Store, *, people=TRAITS, images_per_person=6, noise=1, seed=0):
    """People rate their images. Per image: an agent given the person's own profile scores near the person,
    the preset persona Ava at random, an agent given ANOTHER person's profile always 1 (must not be
    paired), and the preset Bo fails (status timeout, must not count). Returns the (human, own-agent) scores."""
    rng = np.random.default_rng(seed)
    backend, model = JUDGE
    humans = [store.upsert_participant(ParticipantRecord("human", f"person {i}", traits=t, instrument="tipi"))
              for i, t in enumerate(people)]
    ava = store.upsert_participant(ParticipantRecord.agent("Ava", (0.9, 0.5, 0.5, 0.5, 0.5), backend, model))
    bo = store.upsert_participant(ParticipantRecord.agent("Bo", (0.1, 0.5, 0.5, 0.5, 0.5), backend, model))
    truth = []
    for i, (pid, traits) in enumerate(zip(humans, people)):
        own = store.upsert_participant(ParticipantRecord.agent("own profile", traits, backend, model, mirrors=pid,
                                                               instrument="tipi"))
        j = (i + 1) % len(people)
        stranger = store.upsert_participant(ParticipantRecord.agent("own profile", people[j], backend, model,
                                                                    mirrors=humans[j], instrument="tipi"))
        n = images_per_person
        r = RoundRecord(i, [RequestRecord(f"p{i}-{k}", k, pid) for k in range(n)], [GroupRecord(tuple(range(n)), 0, 2)],
                        [GenerationRecord(k, 0, rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), 2, 8) for k in range(n)])
        for g in store.record_round(r).generation_ids:
            h = int(rng.integers(1, 11))
            a = int(np.clip(h + rng.integers(-noise, noise + 1), 1, 10))
            truth.append((h, a))
            store.add_ratings([RatingRecord(pid, g, h),
                               RatingRecord(own, g, a, backend=backend, model=model),
                               RatingRecord(ava, g, int(rng.integers(1, 11)), backend=backend, model=model),
                               RatingRecord(stranger, g, 1, backend=backend, model=model),
                               RatingRecord(bo, g, None, status="timeout", backend=backend, model=model)])
    return humans, np.array(truth)


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    if request.param == "postgresql" and postgres_skip_reason():
        pytest.skip(postgres_skip_reason())
    with database_url(request.param, tmp_path) as url, Store.open(url, tmp_path / "data") as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path):
    """The statistics do not depend on the engine (the frame they read is tested on both)."""
    with Store.open(f"sqlite:///{tmp_path}/a.sqlite3", tmp_path / "data") as s:
        yield s


def test_pairs_are_own_profile_and_presets_only(store):
    humans, truth = fill(store)
    pairs = pair_ratings(store.rating_frame())
    assert sorted(pairs["agent_name"].unique()) == ["Ava", "own profile"]  # Bo failed: not paired
    own = pairs[pairs["pairing"] == "own"]
    assert len(own) == len(truth) and len(pairs[pairs["pairing"] == "preset"]) == len(truth)
    assert sorted(zip(own["human_score"], own["agent_score"])) == sorted(map(tuple, truth.tolist()))
    assert (own["agent_score"] != 1).any()  # the stranger's constant 1 did not leak in
    first = pairs[pairs["human_id"] == humans[0]].iloc[0]
    assert (first["openness"], first["neuroticism"]) == (0.9, 0.1)


def test_statistics_are_the_libraries_values(sqlite_store):
    _, truth = fill(sqlite_store)
    h, a = truth[:, 0], truth[:, 1]
    row = next(r for r in agreement_table(sqlite_store.rating_frame(), resamples=100) if r.pairing == "own" and
               r.slice == "overall")
    got = {k: e.value for k, e in row.statistics.items()}
    assert got["spearman"] == pytest.approx(stats.spearmanr(h, a).statistic, abs=1e-4)
    assert got["kendall"] == pytest.approx(stats.kendalltau(h, a).statistic, abs=1e-4)
    assert got["kappa"] == pytest.approx(cohen_kappa_score(h, a, weights="quadratic", labels=range(1, 11)), abs=1e-4)
    assert got["alpha"] == pytest.approx(krippendorff.alpha(np.vstack([h, a]).astype(float),
                                                            level_of_measurement="interval"), abs=1e-4)
    assert got["mae"] == pytest.approx(np.abs(h - a).mean(), abs=1e-4)
    assert (row.n_pairs, row.n_humans, row.backend, row.model) == (len(h), 4, *JUDGE)


def test_close_agents_agree_and_random_presets_do_not(sqlite_store):
    fill(sqlite_store, images_per_person=10)
    rows = agreement_table(sqlite_store.rating_frame(), resamples=100)
    own = next(r for r in rows if r.pairing == "own" and r.slice == "overall").statistics
    ava = next(r for r in rows if r.slice == "persona" and r.label == "Ava").statistics
    assert own["spearman"].value > 0.8 and own["kappa"].value > 0.8 and own["mae"].value < 1
    assert own["spearman"].low > ava["spearman"].high  # the intervals separate the two
    for e in own.values():
        assert e.low <= e.value <= e.high


def test_trait_levels_split_people_by_their_own_traits(sqlite_store):
    fill(sqlite_store)
    rows = {r.label: r for r in agreement_table(sqlite_store.rating_frame(), resamples=50) if r.slice == "trait"}
    assert rows["openness high"].n_humans == 2 and rows["openness low"].n_humans == 2  # 0.9, 0.7 vs 0.1, 0.3
    assert rows["extraversion high"].n_humans == 3 and rows["extraversion low"].n_humans == 1
    assert rows["extraversion low"].statistics["spearman"].low is None  # one person: no honest interval


def test_bootstrap_is_seeded_and_resamples_people():
    import pandas as pd

    rng = np.random.default_rng(1)
    h = rng.integers(1, 11, 60)
    pairs = pd.DataFrame({"human_id": np.repeat(["a", "b", "c", "d", "e", "f"], 10), "human_score": h,
                          "agent_score": np.clip(h + rng.integers(-2, 3, 60), 1, 10)})
    one, two, other = estimate(pairs, 300, seed=3), estimate(pairs, 300, seed=3), estimate(pairs, 300, seed=4)
    assert one == two and one != other
    alone = estimate(pairs.assign(human_id="a"), 300, seed=3)
    assert alone["spearman"].value == one["spearman"].value and alone["spearman"].low is None


def test_no_pairs_gives_an_empty_table_and_empty_figures(store):
    assert agreement_table(store.rating_frame()) == []
    assert "no human ratings" in format_table([])
    pairs = pair_ratings(store.rating_frame())
    for fig in figs.all_figures(pairs, []).values():
        assert isinstance(fig, go.Figure) and fig.layout.annotations[0].text.startswith("no ")


def test_figures_show_the_pairs(sqlite_store):
    _, truth = fill(sqlite_store)
    frame = sqlite_store.rating_frame()
    pairs, rows = pair_ratings(frame), agreement_table(frame, resamples=50)
    own = pairs[pairs["pairing"] == "own"]
    sc = figs.scatter(own, seed=0)
    points = sc.data[0]
    assert len(points.x) == len(own) and np.all(np.abs(points.x - own["human_score"].to_numpy()) <= 0.18)
    assert np.any(points.x != own["human_score"].to_numpy())  # jittered
    assert list(sc.data[-1].x) == [1, 10] and list(sc.data[-1].y) == [1, 10]  # identity line
    assert figs.scatter(own, seed=0) == sc  # same seed, same figure
    ba = figs.bland_altman(own)
    assert ba.data[1].y[0] == pytest.approx((truth[:, 1] - truth[:, 0]).mean())
    heat = figs.confusion(own)
    assert np.asarray(heat.data[0].z).sum() == len(own)
    perfect = figs.confusion(own.assign(agent_score=own["human_score"]))
    z = np.asarray(perfect.data[0].z)
    assert z.trace() == len(own) and z[0, 0] == ((own["human_score"] <= 2).sum())
    bars = figs.trait_bars(rows)
    assert len(bars.data[0].x) == len([r for r in rows if r.slice == "trait"])
    assert "openness high" in format_table(rows)


def test_the_bootstrap_table_formulas_equal_the_libraries():
    from rlli.analysis.agreement import STATISTIC_FUNCTIONS, _all_statistics, score_table, table_statistics

    rng = np.random.default_rng(0)
    cases = [(rng.integers(1, 11, n), rng.integers(1, 11, n)) for n in (2, 3, 7, 40, 200)]
    cases += [(rng.integers(3, 6, 50), rng.integers(4, 9, 50)), (np.array([1, 10, 5]), np.array([1, 10, 5])),
              (np.array([3, 3, 3, 3]), np.array([1, 5, 9, 2])), (np.array([2, 2, 8, 8]), np.array([8, 8, 2, 2])),
              (np.full(5, 7), np.full(5, 7)), (np.array([4]), np.array([6]))]
    tables = np.stack([score_table(h, a) for h, a in cases])
    fast = table_statistics(tables)
    for i, (h, a) in enumerate(cases):
        slow = _all_statistics(h.astype(float), a.astype(float), STATISTIC_FUNCTIONS)
        for k in slow:
            assert fast[k][i] == pytest.approx(slow[k], abs=1e-9, nan_ok=True), (k, h, a)


# ---------------------------------------------------------------------------------------- agreement v2

def synthetic_frame(agent_reads_person: bool, people: int = 30, images: int = 40, per_image: int = 3, seed: int = 0,
                    failed: int = 5):
    """Images of varying quality, each rated by ``per_image`` people with their own bias. Per (image, person): an
    agent given the person's own profile, one given a partner's profile (the shuffled control) and a preset.
    ``agent_reads_person``: the own-profile agent follows the person's bias; else only the image."""
    import pandas as pd

    from rlli.analysis.agreement import shuffle_partners
    from rlli.store.models import TRAIT_COLUMNS

    rng = np.random.default_rng(seed)
    ids = [f"h{i}" for i in range(people)]
    partner = shuffle_partners(ids, seed)
    bias = dict(zip(ids, rng.normal(0, 2.0, people)))
    traits = {p: rng.uniform(0, 1, 5) for p in ids}
    clip = lambda v: int(np.clip(round(v), 1, 10))  # noqa: E731
    rows = []

    def add(gid, rater, kind, score, name="", mirrors=None, status="ok", who=None):
        t = traits[who or rater] if kind == "human" or mirrors else [None] * 5
        rows.append({"generation_id": gid, "rater_id": rater, "rater_kind": kind, "score": score, "status": status,
                     "rater_name": name, "backend": "llm", "model": "m", "mirrors_id": mirrors,
                     **dict(zip(TRAIT_COLUMNS, t))})

    for g in range(images):
        q = rng.uniform(3, 8)
        chosen = list(rng.choice(ids, per_image, replace=False))
        for p in chosen:
            h = clip(q + bias[p] + rng.normal(0, 0.5))
            add(g, p, "human", h)
            own = clip((q + bias[p] if agent_reads_person else q) + rng.normal(0, 0.5))
            add(g, f"own-{p}", "agent", own, "own profile", mirrors=p, who=p)
            other = partner[p] if partner[p] not in chosen else next(x for x in ids if x not in chosen)
            given = q + bias[other] if agent_reads_person else q  # an agent that ignores the profile it is given
            add(g, f"own-{other}-on-{p}", "agent", clip(given + rng.normal(0, 0.5)), "own profile", mirrors=other, who=other)
            add(g, "preset-ava", "agent", clip(q + rng.normal(0, 1)), "Ava")
    for k in range(failed):  # failed own-profile ratings where a person rated
        p = rows[4 * k]["rater_id"]
        add(rows[4 * k]["generation_id"], f"own-{p}", "agent", None, "own profile", mirrors=p, status="timeout", who=p)
    frame = pd.DataFrame(rows)
    return frame.astype({"score": "Int64"})


def overall_own(frame, resamples=100):
    return next(r for r in agreement_table(frame, resamples=resamples) if r.slice == "overall" and r.pairing == "own")


def test_the_shuffled_control_separates_an_agent_that_reads_the_person_from_one_that_reads_the_image():
    reads = overall_own(synthetic_frame(True))
    image_only = overall_own(synthetic_frame(False))
    for row in (reads, image_only):
        sc = row.shuffled_control
        assert sc["n_pairs"] >= 120 and sc["statistics"]["spearman"]["value"] is not None  # partners + co-raters' agents
    assert reads.shuffled_control["own_minus_shuffled_spearman"] > 0.3
    assert abs(image_only.shuffled_control["own_minus_shuffled_spearman"]) < 0.2
    assert reads.statistics["spearman"].low > reads.shuffled_control["statistics"]["spearman"]["high"]


def test_within_image_agreement_needs_the_person_not_the_image():
    reads, image_only = overall_own(synthetic_frame(True)), overall_own(synthetic_frame(False))
    assert reads.within_image["images"] == 40 and reads.within_image["pairs_of_people"] == 40 * 3
    assert reads.within_image["tau"] > 0.6 and reads.within_image["low"] > 0.4
    assert image_only.within_image["tau"] < reads.within_image["tau"] - 0.4  # only noise orders people on one image


def test_failed_ratings_are_counted_per_slice():
    row = overall_own(synthetic_frame(True, failed=5))
    assert row.n_failed == 5
    preset = next(r for r in agreement_table(synthetic_frame(True), resamples=50) if r.pairing == "preset"
                  and r.slice == "overall")
    assert preset.n_failed == 0


def test_human_human_ceiling_on_the_same_images():
    from rlli.analysis.agreement import human_human_estimate, human_pairs

    frame = synthetic_frame(True)
    row = overall_own(frame)
    hh = row.human_human
    assert hh["n_images"] == 40 and hh["n_pairs"] == 40 * 3 and hh["n_humans"] == 30
    rho = hh["statistics"]["spearman"]
    assert rho["low"] <= rho["value"] <= rho["high"]
    assert row.agent_human_same_images["n_pairs"] == row.n_pairs  # every image here has two or more people
    pairs = human_pairs(frame)
    assert len(pairs) == 40 * 3 * 2 and (pairs["human_id"] != pairs["other_id"]).all()
    direct = stats.spearmanr(pairs["human_score"], pairs["other_score"]).statistic
    assert rho["value"] == pytest.approx(direct, abs=1e-4)
    assert human_human_estimate(pairs.iloc[:0])["n_pairs"] == 0


def test_people_needed_and_drop_k():
    from rlli.analysis.agreement import people_needed

    reads, image_only = overall_own(synthetic_frame(True)), overall_own(synthetic_frame(False))
    assert reads.drop_k["flips"] and reads.drop_k["k"] >= 3  # robust: several people must go
    assert image_only.drop_k["k"] < reads.drop_k["k"] / 2  # a chance edge falls to a few removals
    n = people_needed(0.5, 0.3, n_pairs=100, n_people=10)
    # n pairs = 3 + 2 * ((1.96 + 0.8416) / (atanh .5 - atanh .3))^2 = 3 + 2 * (2.8016 / 0.2398)^2 = 276.1
    assert n["pairs"] == 277 and n["people"] == 28
    assert people_needed(0.5, 0.5, 100, 10)["people"] is None and people_needed(None, 0.3, 100, 10) is None
    assert 10 * reads.people_needed["people"] < image_only.people_needed["people"]


def test_shuffle_partners_is_a_seeded_derangement():
    from rlli.analysis.agreement import shuffle_partners

    ids = [f"p{i}" for i in range(9)]
    m = shuffle_partners(ids, 3)
    assert sorted(m) == ids and sorted(m.values()) == ids and all(k != v for k, v in m.items())
    assert m == shuffle_partners(ids, 3) and shuffle_partners(["a"], 0) == {}


def test_the_store_fill_has_a_shuffled_pairing_only_on_request(sqlite_store):
    fill(sqlite_store)
    frame = sqlite_store.rating_frame()
    assert "shuffled" not in set(pair_ratings(frame)["pairing"])
    assert (pair_ratings(frame, shuffled=True)["pairing"] == "shuffled").sum() == 4 * 6  # the strangers
    row = overall_own(frame, resamples=50)
    assert row.shuffled_control["n_pairs"] == 24 and row.n_failed == 0
    preset = next(r for r in agreement_table(frame, resamples=50) if r.pairing == "preset" and r.slice == "overall")
    assert preset.n_failed == 24  # Bo timed out on every image

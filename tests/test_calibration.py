import json

from rlli.diffusion.calibration import QualityTable, calibration_prompts, load_table, plan_groups
from rlli.grouping import Group


def _table():
    return QualityTable(
        sim_edges=[-1.0, 0.5, 0.8, 1.0001],
        fractions=[0.0, 0.25, 0.5, 0.75, 1.0],
        quality=[[1.0, 0.8, 0.5, 0.4, 0.3], [1.0, 0.99, 0.9, 0.8, 0.7], [1.0, 1.0, 0.99, 0.98, 0.9]],
        meta={},
    )


def test_quality_lookup_and_max_fraction():
    t = _table()
    assert t.quality_at(0.9, 0.0) == 1.0
    assert abs(t.quality_at(0.6, 0.375) - 0.945) < 1e-9
    assert t.max_fraction(0.9, 0.03) == 0.75
    assert t.max_fraction(0.6, 0.03) == 0.25
    assert t.max_fraction(0.1, 0.03) == 0.0
    assert t.max_fraction(0.9, 0.2) == 1.0


def test_plan_uses_the_least_similar_member_and_never_shares_singletons():
    t = _table()
    groups = [Group((0, 1), 0, (1.0, 0.95)), Group((2, 3), 3, (0.6, 1.0)), Group((4,), 4, (1.0,))]
    plans = plan_groups(groups, 20, t, 0.03)
    assert [p.shared_steps for p in plans] == [15, 5, 0]
    assert [p.anchor for p in plans] == [0, 3, 4]
    assert all(p.shared_steps == 0 for p in plan_groups(groups, 20, None, 0.03))


def test_unmeasured_bins_borrow_a_lower_bin(tmp_path):
    t = _table()
    t.quality[2] = [None] * 5
    assert t.max_fraction(0.95, 0.03) == 0.25
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"sim_edges": t.sim_edges, "fractions": t.fractions, "quality": t.quality}))
    assert load_table(path).max_fraction(0.6, 0.03) == 0.25
    assert load_table(tmp_path / "missing.json") is None


def test_calibration_prompts_span_paraphrases_to_unrelated():
    pairs = calibration_prompts(4, seed=0)
    assert len(pairs) == 4 and all(len(v) == 7 for _, v in pairs)
    assert pairs == calibration_prompts(4, seed=0)


def test_threshold_sweep_reports_savings_and_recommends_one():
    import numpy as np

    from rlli.diffusion.calibration import THRESHOLDS, service_round, tune_threshold

    assert len(service_round(np.random.default_rng(0))) == 16
    r = tune_threshold(_table(), steps=20, tolerance=0.03, rounds=3)
    assert [row["threshold"] for row in r["sweep"]] == list(THRESHOLDS)
    assert r["recommended"] in THRESHOLDS
    assert all(0 <= row["passes_saved"] < 1 and row["predicted_quality"] >= 0.97 for row in r["sweep"])
    assert max(row["passes_saved"] for row in r["sweep"]) > 0


def test_calibrate_measures_a_table_on_a_backbone(tiny_sd):
    from rlli.diffusion.calibration import SIM_EDGES, VARIANT_KINDS, calibrate
    from rlli.diffusion.engine import Plan

    t = calibrate(tiny_sd, Plan(steps=4, guidance_scale=1.0), n_anchors=2, log=lambda m: None)
    assert t["shared_steps"] == [0, 1, 2, 3, 4] and t["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(t["quality"]) == len(SIM_EDGES) - 1 == len(t["pairs_per_bin"])
    assert sum(t["pairs_per_bin"]) == t["pairs"] == 2 * len(VARIANT_KINDS)
    assert set(t["by_variant_kind"]) == set(VARIANT_KINDS)
    for row in t["quality"]:
        assert row is None or (len(row) == 5 and row[0] == 1.0)


def test_threshold_recommendation_prefers_larger_groups_on_equal_savings():
    from rlli.diffusion.calibration import recommend_threshold

    rows = [{"threshold": t, "passes_saved": s} for t, s in
            {0.5: 0.10, 0.6: 0.158, 0.7: 0.161, 0.8: 0.16, 0.9: 0.12}.items()]
    assert recommend_threshold(rows) == 0.6
    rows[1]["passes_saved"] = 0.15
    assert recommend_threshold(rows) == 0.7

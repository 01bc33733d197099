"""Exports read back: CSV, JSON lines, Parquet (pandas) and the image folder (Hugging Face datasets)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rlli.store import GenerationRecord, GroupRecord, ParticipantRecord, RatingRecord, RequestRecord, RoundRecord, Store
from rlli.store.export import FORMATS, export


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)


@pytest.fixture
def filled(tmp_path):
    with Store.open(f"sqlite:///{tmp_path}/e.sqlite3", tmp_path / "data") as store:
        alice = store.upsert_participant(ParticipantRecord("human", "alice", traits=(0.1, 0.2, 0.3, 0.4, 0.5),
                                                           instrument="tipi"))
        bob = store.upsert_participant(ParticipantRecord("human", "bob"))
        ava = store.upsert_participant(ParticipantRecord.agent("Ava", (0.9, 0.5, 0.5, 0.5, 0.5), "trait", "p-v1"))
        r = RoundRecord(7, [RequestRecord("a red cube, \"quoted\"\nnew line", 1, alice), RequestRecord("café ☕", 2, bob)],
                        [GroupRecord((0, 1), 0, 4, (1.0, 0.8))],
                        [GenerationRecord(0, 0, image(0), 4, 16, 2048, quality=0.95, delay_s=2.5,
                                          delays={"transmit": 0.5, "device": 2.0}, bandwidth_share=0.6, energy_j=1.5),
                         GenerationRecord(1, 0, image(1), 4, 16, 2048, quality=0.9, delay_s=3.0)],
                        policy="gddpg", backbone="tiny-t2i", steps=20)
        g0, g1 = store.record_round(r).generation_ids
        store.add_ratings([RatingRecord(alice, g0, 8, reason="crisp, \"nice\""), RatingRecord(bob, g1, 3),
                           RatingRecord(ava, g0, 7, backend="trait", model="p-v1", latency_s=0.001),
                           RatingRecord(ava, g1, None, reason="timed out", status="timeout", backend="trait",
                                        model="p-v1")])
        yield store, alice


@pytest.mark.parametrize("fmt", FORMATS)
def test_tables_read_back_with_all_context(filled, tmp_path, fmt):
    store, _ = filled
    res = export(store, tmp_path / "out", fmt, images=False)
    assert res.table.name == f"ratings.{fmt}" and res.rows == 4 and res.imagefolder is None
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet,
            "jsonl": lambda p: pd.read_json(p, lines=True, dtype=False)}[fmt](res.table)
    assert len(read) == 4
    first = read.iloc[0]
    assert (first.prompt, first.score, first.reason, first.openness, first.delay_s, first.policy, first.backend) == (
        "a red cube, \"quoted\"\nnew line", 8, "crisp, \"nice\"", 0.1, 2.5, "gddpg", "human")
    delays = first.delays if fmt == "jsonl" else json.loads(first.delays)
    assert delays == {"transmit": 0.5, "device": 2.0}
    assert pd.isna(read.iloc[3].score) and read.iloc[3].status == "timeout"
    assert read.iloc[1].prompt == "café ☕"
    assert str(first.created_at).endswith("+00:00")


def test_imagefolder_round_trips_through_datasets(filled, tmp_path):
    import datasets

    store, _ = filled
    res = export(store, tmp_path / "out", "jsonl")
    assert res.images == 4
    ds = datasets.load_dataset("imagefolder", data_dir=str(res.imagefolder), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 4
    rows = sorted(ds, key=lambda r: r["rating_id"])
    assert [r["score"] for r in rows] == [8, 3, 7, None]
    assert np.array_equal(np.asarray(rows[0]["image"].convert("RGB")), image(0))
    assert np.array_equal(np.asarray(rows[1]["image"].convert("RGB")), image(1))
    assert rows[0]["prompt"].startswith("a red cube") and rows[2]["rater_name"] == "Ava"
    assert json.loads(rows[0]["delays"]) == {"transmit": 0.5, "device": 2.0}


def test_a_participant_exports_only_their_own_ratings(filled, tmp_path):
    store, alice = filled
    res = export(store, tmp_path / "mine", "csv", participant_id=alice)
    read = pd.read_csv(res.table)
    assert res.rows == 1 and list(read.rater_id) == [alice] and res.images == 1


def test_bad_format_and_unwritable_folder_are_clear(filled, tmp_path):
    store, _ = filled
    with pytest.raises(ValueError, match="unknown export format"):
        export(store, tmp_path / "x", "xlsx")
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ValueError, match="cannot write the export folder"):
        export(store, blocked / "sub", "csv")

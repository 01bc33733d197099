"""Exports: one row per rating with all its context, as CSV, JSON lines or Parquet, and a folder in the
Hugging Face datasets image-folder layout (``images/`` + ``metadata.jsonl``) that
``datasets.load_dataset("imagefolder", data_dir=...)`` reads back with the image as a column.

Nested values (``delays``, ``extras``) become JSON text in CSV, Parquet and the image-folder metadata, and
stay objects in JSON lines; times are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rlli.store.repository import Store

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")
NESTED = ("delays", "extras", "rating_extras")
TIMES = ("created_at", "round_created_at")


@dataclass(frozen=True)
class ExportResult:
    table: Path
    imagefolder: Path | None
    rows: int
    images: int


def _times_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in TIMES:
        t = pd.to_datetime(out[col], utc=True)
        out[col] = t.map(lambda v: v.isoformat() if pd.notna(v) else None)
    return out


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    out = _times_as_text(frame)
    for col in NESTED:
        out[col] = out[col].map(lambda v: json.dumps(v, sort_keys=True))
    return out


def write_table(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
    if fmt == "csv":
        _flat(frame).to_csv(path, index=False)
    elif fmt == "parquet":
        _flat(frame).to_parquet(path, index=False)
    elif fmt == "jsonl":
        _times_as_text(frame).to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_imagefolder(store: Store, frame: pd.DataFrame, folder: Path) -> int:
    """``folder/images/<rating id>.png`` (hard links into the data folder where possible) and
    ``folder/metadata.jsonl`` with a ``file_name`` per row; returns the number of images."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    meta = _flat(frame)
    names = []
    for rating_id, sha in zip(meta["rating_id"], meta["image_sha256"]):
        name = f"images/{int(rating_id):09d}.png"
        dst = folder / name
        if not dst.exists():
            src = store.image_file(sha)
            if not src.exists():
                raise FileNotFoundError(f"image {sha[:12]}... of rating {rating_id} is missing from {store.data_dir}")
            _link_or_copy(src, dst)
        names.append(name)
    meta.insert(0, "file_name", names)
    meta.to_json(folder / "metadata.jsonl", orient="records", lines=True, force_ascii=False)
    return len(names)


def export(store: Store, out: Path, fmt: str, *, participant_id: str | None = None, images: bool = True) -> ExportResult:
    """Write ``out/ratings.<fmt>`` and (with ``images``) ``out/imagefolder/``; a participant's own data only
    when ``participant_id`` is given."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot write the export folder {out}: {e}") from None
    frame = store.rating_frame(participant_id)
    table = write_table(frame, out / f"ratings.{fmt}", fmt)
    folder, n = None, 0
    if images:
        folder = out / "imagefolder"
        if folder.exists():
            shutil.rmtree(folder)
        n = write_imagefolder(store, frame, folder)
    return ExportResult(table, folder, len(frame), n)

"""Collected labels survive a Space restart: snapshots of the store pushed to a private dataset repo.

A free Space's disk is wiped when it restarts. With ``RLLI_BACKUP_REPO`` set (a private Hugging Face
dataset repo, token from the ``HF_TOKEN`` secret), the app

- on start, restores the last snapshot when the database file is missing (a fresh disk), and
- every ``RLLI_BACKUP_EVERY_MIN`` minutes pushes a consistent snapshot: the SQLite database copied
  with SQLite's online backup API (a transactionally consistent copy while writers go on) plus the
  data folder's files (images, content-addressed, uploaded once; the id salt, so hashed participant
  ids stay the same after a restore - hence the repo must be private).

The upload runs through ``huggingface_hub.CommitScheduler`` (one background thread, only changed
files per commit). A PostgreSQL store is not snapshotted here: back it up with the server's tools.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from pathlib import Path

from huggingface_hub import CommitScheduler, HfApi

from rlli.config import Settings

log = logging.getLogger(__name__)

DB_NAME = "rlli.sqlite3"  # the database's name inside a snapshot
DATA = "data"  # the data folder's files inside a snapshot


def sqlite_path(database_url: str) -> Path | None:
    """The file of a ``sqlite:///FILE`` URL; None for other databases."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def take_snapshot(db_file: Path, data_dir: Path, dest: Path) -> None:
    """A consistent copy of the database and the data folder's files under ``dest``.

    The database goes through SQLite's backup API into a temporary file, then replaces the previous
    snapshot by rename, so ``dest`` never holds a half-written database. Data files are copied once
    (images are named by their hash and never change); changed small files are replaced.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if db_file.exists():
        tmp = dest / f".{DB_NAME}.tmp"
        src = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            with dst:
                src.backup(dst)
            dst.close()
        finally:
            src.close()
        tmp.replace(dest / DB_NAME)
    if data_dir.exists():
        for f in data_dir.rglob("*"):
            rel = f.relative_to(data_dir)
            if not f.is_file() or any(part.startswith(".") for part in rel.parts) or f.suffix == ".tmp":
                continue  # hidden files and folders (the backup staging folder itself) and partial writes
            target = dest / DATA / rel
            if target.exists() and target.stat().st_size == f.stat().st_size and target.stat().st_mtime >= f.stat().st_mtime:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def restore_snapshot(snapshot: Path, db_file: Path, data_dir: Path) -> bool:
    """Put a downloaded snapshot in place when the database is missing; False when nothing was done."""
    if db_file.exists() or not (snapshot / DB_NAME).exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    if (snapshot / DATA).exists():
        shutil.copytree(snapshot / DATA, data_dir, dirs_exist_ok=True)
    db_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_file.with_suffix(".restoring")
    shutil.copy2(snapshot / DB_NAME, tmp)
    tmp.replace(db_file)
    return True


class SnapshotScheduler(CommitScheduler):
    """A CommitScheduler that takes a fresh consistent snapshot before every push."""

    def __init__(self, *, db_file: Path, data_dir: Path, staging: Path, **kwargs):
        self.db_file, self.data_dir, self.staging = db_file, data_dir, staging
        take_snapshot(db_file, data_dir, staging)
        super().__init__(folder_path=staging, **kwargs)

    def push_to_hub(self):
        with self.lock:
            take_snapshot(self.db_file, self.data_dir, self.staging)
        return super().push_to_hub()


def start_backup(settings: Settings, api: HfApi | None = None) -> SnapshotScheduler | None:
    """Restore (if the disk is fresh) and start the scheduled snapshots; None when backups are off.

    ``api`` is the Hub client (tests pass a local stand-in); by default ``HfApi`` with ``HF_TOKEN``.
    Problems are logged and the app goes on without backups - a lost backup must not stop a demo.
    """
    if not settings.backup_repo:
        return None
    db_file = sqlite_path(settings.database_url)
    if db_file is None:
        log.warning("RLLI_BACKUP_REPO is set but the store is not SQLite: back up PostgreSQL with its own tools")
        return None
    api = api or HfApi()  # reads HF_TOKEN from the environment; never logged
    staging = Path(settings.data_dir) / ".backup"  # inside the data folder: the one place the app may write
    try:
        api.create_repo(settings.backup_repo, repo_type="dataset", private=True, exist_ok=True)
        if not db_file.exists():
            with tempfile.TemporaryDirectory() as tmp:
                api.snapshot_download(repo_id=settings.backup_repo, repo_type="dataset", local_dir=tmp)
                if restore_snapshot(Path(tmp), db_file, Path(settings.data_dir)):
                    log.info("restored the store from the backup repo %s", settings.backup_repo)
        return SnapshotScheduler(db_file=db_file, data_dir=Path(settings.data_dir), staging=staging,
                                 repo_id=settings.backup_repo, repo_type="dataset", private=True,
                                 every=settings.backup_every_min, hf_api=api)
    except Exception as e:  # network, auth: say so, keep serving
        log.error("backups to %s are OFF: %s: %s", settings.backup_repo, type(e).__name__, str(e)[:200])
        return None

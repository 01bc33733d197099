"""Snapshots of the store to a dataset repo, and the restore on a fresh disk, against a local stand-in Hub.

The stand-in is a real ``HfApi`` whose repository calls write to a local folder, so the code under test
(``CommitScheduler``'s listing, ``CommitOperationAdd`` with partial file reads, our snapshot and restore)
runs unchanged; only the network transfer is replaced.
"""

import shutil
import sqlite3
import threading
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoUrl

from rlli.config import Settings
from rlli.store.backup import DB_NAME, start_backup


class LocalHub(HfApi):
    def __init__(self, root: Path):
        super().__init__(token=False)
        self.root = root
        self.commits = 0

    def create_repo(self, repo_id, *, private=None, repo_type=None, exist_ok=False, **_):
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, revision=None, **_):
        for op in operations:
            target = self.root / repo_id / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            with op.as_file() as src:
                target.write_bytes(src.read())
        self.commits += 1
        return commit_message

    def snapshot_download(self, repo_id, *, repo_type=None, local_dir=None, **_):
        shutil.copytree(self.root / repo_id, local_dir, dirs_exist_ok=True)
        return str(local_dir)


def make_store(db: Path, data: Path, rows: int) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "images" / "ab").mkdir(parents=True, exist_ok=True)
    (data / "images" / "ab" / "abcd.png").write_bytes(b"\x89PNG fake image bytes")
    (data / "id-salt").write_text("salt")
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS ratings (id INTEGER PRIMARY KEY, score INTEGER)")
    con.executemany("INSERT INTO ratings (score) VALUES (?)", [(i % 10 + 1,) for i in range(rows)])
    con.commit()
    con.close()


def count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM ratings").fetchone()[0]
    finally:
        con.close()


def settings_for(tmp: Path, name: str) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp / name / 'db.sqlite3'}", data_dir=tmp / name / "data",
                    backup_repo="someone/rlli-labels", backup_every_min=60)


def test_snapshots_reach_the_repo_and_a_fresh_disk_gets_them_back(tmp_path):
    hub = LocalHub(tmp_path / "hub")
    s = settings_for(tmp_path, "space")
    db = Path(s.database_url.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    make_store(db, s.data_dir, rows=50)

    sched = start_backup(s, api=hub)
    try:
        sched.trigger().result(timeout=60)
        assert count(hub.root / s.backup_repo / DB_NAME) == 50
        make_store(db, s.data_dir, rows=25)  # more labels arrive
        sched.trigger().result(timeout=60)
        assert count(hub.root / s.backup_repo / DB_NAME) == 75
        assert (hub.root / s.backup_repo / "data" / "images" / "ab" / "abcd.png").exists()
    finally:
        sched.stop()

    fresh = settings_for(tmp_path, "restarted")  # the Space restarted on a wiped disk
    sched2 = start_backup(fresh, api=hub)
    try:
        restored = Path(fresh.database_url.removeprefix("sqlite:///"))
        assert count(restored) == 75
        assert (fresh.data_dir / "images" / "ab" / "abcd.png").read_bytes() == b"\x89PNG fake image bytes"
        assert (fresh.data_dir / "id-salt").read_text() == "salt"
    finally:
        sched2.stop()


def test_a_snapshot_taken_while_writers_go_on_is_consistent(tmp_path):
    hub = LocalHub(tmp_path / "hub")
    s = settings_for(tmp_path, "busy")
    db = Path(s.database_url.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    make_store(db, s.data_dir, rows=1)
    stop = threading.Event()

    def writer():
        con = sqlite3.connect(db, timeout=30)
        while not stop.is_set():
            with con:
                con.executemany("INSERT INTO ratings (score) VALUES (?)", [(5,)] * 100)
        con.close()

    t = threading.Thread(target=writer)
    t.start()
    sched = start_backup(s, api=hub)
    try:
        for _ in range(3):
            sched.trigger().result(timeout=60)
            snap = sqlite3.connect(hub.root / s.backup_repo / DB_NAME)
            assert snap.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            n = snap.execute("SELECT count(*) FROM ratings").fetchone()[0]
            snap.close()
            assert (n - 1) % 100 == 0, "a snapshot holds whole transactions only"
    finally:
        stop.set()
        t.join()
        sched.stop()


def test_backups_are_off_without_a_repo_and_a_dead_hub_does_not_stop_the_app(tmp_path):
    assert start_backup(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", data_dir=tmp_path)) is None

    class DeadHub(LocalHub):
        def create_repo(self, *a, **k):
            raise ConnectionError("no route to huggingface.co")

    assert start_backup(settings_for(tmp_path, "offline"), api=DeadHub(tmp_path / "hub")) is None

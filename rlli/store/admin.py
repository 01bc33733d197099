"""Data a person or an administrator takes out of the store: one's own ratings, a bulk export, a deletion.

Admin functions need ``RLLI_ADMIN_TOKEN`` (compared in constant time; never shown or logged). Every problem
is an :class:`AdminError` whose message can be shown as it is.
"""

from __future__ import annotations

import hmac
import shutil
import tempfile
from pathlib import Path

from rlli.store.export import FORMATS, export, write_table
from rlli.store.repository import Store


class AdminError(ValueError):
    """A refused data request (admin off, wrong token, bad format, no participant id)."""


def my_ratings_file(store: Store, visitor_key: str) -> Path:
    """A CSV of one person's own ratings (with their context), by the key of their browser or account."""
    frame = store.rating_frame(store.participant_id("human", visitor_key))
    return write_table(frame, Path(tempfile.mkdtemp(prefix="rlli-mine-")) / "my-ratings.csv", "csv")


def check_admin(expected_token: str, token) -> None:
    if not expected_token:
        raise AdminError("Admin functions are off: set RLLI_ADMIN_TOKEN on the server.")
    if not hmac.compare_digest(str(token or "").encode(), expected_token.encode()):
        raise AdminError("Wrong admin token.")


def admin_export(store: Store, expected_token: str, token, fmt: str = "csv") -> Path:
    """Every rating with its context and the images, as one zip (admin only)."""
    check_admin(expected_token, token)
    if fmt not in FORMATS:
        raise AdminError(f"Choose {', '.join(FORMATS)}.")
    folder = Path(tempfile.mkdtemp(prefix="rlli-export-"))
    export(store, folder / "export", fmt)
    return Path(shutil.make_archive(str(folder / "rlli-export"), "zip", folder / "export"))


def admin_delete(store: Store, expected_token: str, token, participant_id: str) -> dict[str, int]:
    """Remove a participant and everything that holds their data (admin only)."""
    check_admin(expected_token, token)
    pid = (participant_id or "").strip()
    if not pid:
        raise AdminError("Give the participant id to delete (from an export).")
    return store.delete_participant(pid)


__all__ = ["AdminError", "admin_delete", "admin_export", "check_admin", "my_ratings_file"]

"""Images as PNG files in the data folder, named by the sha256 of their bytes.

Written atomically (a temporary file in the same folder, fsync, rename) before the database row that
names them commits, so a stored generation always has its image. A crash in between leaves at most an
unreferenced file, never a row without its image. The same image is stored once.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_SIDE = 4096


def encode_png(image: np.ndarray | bytes) -> tuple[bytes, int, int]:
    """PNG bytes, width and height from a uint8 array (H, W), (H, W, 3) or (H, W, 4), or from PNG bytes."""
    if isinstance(image, bytes | bytearray):
        try:
            with Image.open(io.BytesIO(image)) as im:
                if im.format != "PNG":
                    raise ValueError(f"images are stored as PNG, got {im.format}")
                im.verify()
                w, h = im.size
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"the image bytes are not a readable PNG ({e})") from None
        return bytes(image), w, h
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"an image must be uint8 (H, W), (H, W, 3) or (H, W, 4), got {a.dtype} {a.shape}")
    h, w = a.shape[:2]
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ValueError(f"image sides must be 1..{MAX_SIDE} pixels, got {w}x{h}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue(), w, h


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_path(data_dir: Path, sha: str) -> Path:
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"not a sha256 hex digest: {sha!r}")
    return Path(data_dir) / "images" / sha[:2] / f"{sha}.png"


def _libc_syncfs():
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _libc_syncfs()


def _flush_to_disk(folder: Path, files: list[Path]) -> None:
    """Make the files' bytes and names durable: one syncfs(2) of the data folder's file system on Linux (a
    single journal commit for a whole round's images), else one fsync per file and folder."""
    if _SYNCFS is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in [*files, *{p.parent for p in files}]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _intact(path: Path, sha: str) -> bool:
    try:
        return sha256_hex(path.read_bytes()) == sha
    except FileNotFoundError:
        return False


def write_pngs(data_dir: Path, pngs: list[bytes]) -> list[str]:
    """Store PNG bytes under their hashes (each image once) and flush them to disk; return the hashes.

    Each new file is written under a temporary name and renamed into place, so a hash name never shows
    a partly written image; the caller commits its database rows only after this returns.
    """
    hashes = [sha256_hex(png) for png in pngs]
    pending = {sha: png for sha, png in zip(hashes, pngs) if not _intact(image_path(data_dir, sha), sha)}
    written: list[Path] = []
    for sha, png in pending.items():
        path = image_path(data_dir, sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(png)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(path)
    if written:
        _flush_to_disk(Path(data_dir), written)
    return hashes



def read_png(data_dir: Path, sha: str) -> bytes:
    """The stored image's bytes, checked against its hash."""
    data = image_path(data_dir, sha).read_bytes()
    if sha256_hex(data) != sha:
        raise OSError(f"image {sha[:12]}... in {data_dir} is corrupted (its bytes no longer match its hash)")
    return data

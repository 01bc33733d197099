"""What every command shares: the argument types, one way to fail (``error: ...``, exit code 2) and one JSON
printer (benchmark JSON is the records' fields, with numpy scalars and dataclasses turned into JSON)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
from pathlib import Path

EXIT_USER_ERROR = 2


def fail(message: str) -> int:
    """Print ``error: message`` on stderr; the exit code of a user-caused error."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _default(o):
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def to_json(obj, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, ensure_ascii=False, default=_default)


def print_json(obj, indent: int | None = 2) -> None:
    """The one JSON printer of the command line."""
    print(to_json(obj, indent))


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (so `--repeats 0` is refused with a message, not a crash)."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a random seed, a whole number from 0 to 2**31 - 1 (what every generator here accepts)."""
    value = _whole_number(text)
    if not 0 <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2147483647, got {value}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a finite number in [-1, 1] (cosine similarities; rejects 5 and nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not -1.0 <= value <= 1.0:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a cosine similarity in [-1, 1], got {text}")
    return value

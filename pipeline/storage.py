"""Atomic writes: every output is written to a temporary file in the same folder, then renamed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import InputError

# mkstemp creates 0600 files; outputs should get the usual permissions (0666 minus umask).
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def _temporary_beside(dest: Path) -> Path:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise InputError(f"cannot write output folder ({exc.strerror})", file=dest.parent) from exc
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(_FILE_MODE)
    return tmp


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` only if the block succeeds."""
    with atomic_paths(Path(dest)) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*dests: Path) -> Iterator[tuple[Path, ...]]:
    """Yield a temporary path beside each of ``dests``; if the block succeeds, rename them all over
    ``dests``, in order, or none: when one rename fails, the files already replaced are restored."""
    temps: list[Path] = []
    try:
        for dest in dests:
            temps.append(_temporary_beside(Path(dest)))
        yield tuple(temps)
        _publish(list(zip(temps, map(Path, dests), strict=True)))
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _publish(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each temporary file over its destination; all or nothing."""
    done: list[tuple[Path, Path | None]] = []  # destinations replaced, and where their old file went
    try:
        for tmp, dest in pairs:
            old: Path | None = None
            if dest.exists():
                old = _temporary_beside(dest)
                dest.replace(old)
            done.append((dest, old))
            tmp.replace(dest)
    except OSError:
        for dest, old in reversed(done):
            if old is not None:
                old.replace(dest)
            else:
                dest.unlink(missing_ok=True)
        raise
    for _, old in done:
        if old is not None:
            old.unlink(missing_ok=True)


def write_parquet_atomic(frame: pd.DataFrame, dest: Path) -> None:
    """Write a frame to Parquet atomically."""
    with atomic_path(dest) as tmp:
        frame.to_parquet(tmp, index=False)


def write_json_atomic(data: Any, dest: Path) -> None:
    """Write JSON (sorted keys, indented) atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_text_atomic(text: str, dest: Path) -> None:
    """Write a text file atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()

"""Checks of paths the user names, with one wording: a path that is missing is a FileNotFoundError, one that
exists as the wrong kind (a folder where a file is expected, or the reverse) a ValueError that says so."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["existing_file", "existing_folder"]


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path, checked to be an existing file (``what`` names it in messages, e.g. "gallery file").

    Raises:
        FileNotFoundError: nothing is there.
        ValueError: a folder (or another non-file) is there.
    """
    return _existing(path, what, folder=False)


def existing_folder(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path, checked to be an existing folder.

    Raises:
        FileNotFoundError: nothing is there.
        ValueError: a file (or another non-folder) is there.
    """
    return _existing(path, what, folder=True)


def _existing(path: str | os.PathLike[str], what: str, *, folder: bool) -> Path:
    p = Path(path)
    if p.is_dir() if folder else p.is_file():
        return p
    if p.exists():
        kind = "folder" if p.is_dir() else "file" if p.is_file() else "special file"
        raise ValueError(f"{p} is a {kind}; expected {'an' if what[:1].lower() in 'aeiou' else 'a'} {what}")
    raise FileNotFoundError(f"no such {what}: {p}")

"""The SHA-256 sums of a saved model's files (``SHA256SUMS``, in ``sha256sum -c`` format), written and
checked in one place: a neural model's folder and a folder of chosen models (the ensemble, a
statistical model, a saved Forecaster) are both refused when a file differs from its sum, so an edited
scaling constant, config or forecast range is never used silently."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from forecast.core.errors import ForecastError

SUMS = "SHA256SUMS"
REFIT = "refit with `python -m forecast fit` to save the model again"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(directory: Path, names: Iterable[str]) -> None:
    """``SHA256SUMS`` in ``directory`` for the files ``names`` (paths relative to it, ``/``-separated)."""
    directory = Path(directory)
    (directory / SUMS).write_text("".join(f"{sha256(directory / name)}  {name}\n" for name in dict.fromkeys(names)))


def add(directory: Path, *names: str) -> None:
    """Add files written after the others (e.g. a model's forecast ranges) to its ``SHA256SUMS``."""
    write(directory, [*listed(directory), *names])


def listed(directory: Path) -> dict[str, str]:
    """The sums recorded in ``directory``: file name -> SHA-256 ({} when there is no ``SHA256SUMS``)."""
    path = Path(directory) / SUMS
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    return sums


def all_files(directory: Path) -> list[str]:
    """Every file under ``directory`` but its own ``SHA256SUMS``, as :func:`write` names them."""
    directory = Path(directory)
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and p != directory / SUMS)


def verify(directory: Path, required: Iterable[str], kind: str) -> None:
    """Refuse (ForecastError) a ``kind`` folder whose ``SHA256SUMS`` is missing, lacks a ``required``
    file, or names a file that is missing or whose SHA-256 differs, naming the file and what to do."""
    directory = Path(directory)
    if not (directory / SUMS).is_file():
        raise ForecastError(f"{directory}: not a {kind} ({SUMS} is missing); {REFIT}")
    sums = listed(directory)
    for name in dict.fromkeys([*required, *sums]):
        path = directory / name
        if not path.is_file():
            raise ForecastError(f"{directory}: not a {kind} ({name} is missing); {REFIT}")
        if sums.get(name) != sha256(path):
            raise ForecastError(f"{path}: the file is corrupt or was modified (its SHA-256 differs from {SUMS}); "
                                f"{REFIT}")

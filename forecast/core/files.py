"""Writing the files a user owns, safely: refuse a path that must not be written (an input, a
folder, a device, a name too long) before any work, write atomically (a temporary file renamed into
place, with the replaced file's mode), clear temporaries a killed write left, and turn a full or
read-only disk into an error that says what to do. The export, saved models, checkpoints and the
best config of a sweep all write through here; it imports nothing of the package but its errors."""

from __future__ import annotations

import errno
import glob
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from forecast.core.errors import ForecastError


def check_writable(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Fail before any work if the file could not, or must not, be written at the end.

    ``inputs`` are the files the run reads: writing over one of them is refused.
    Returns the path written to: a symlink's target.
    """
    link = Path(path)
    check_name_length(link)
    path = Path(os.path.realpath(link))
    parent = path.parent
    if path.is_dir():
        raise ForecastError(f"export path {link} is a directory; give a file name such as {link / 'forecast.csv'}")
    if path.exists() and not path.is_file():
        raise ForecastError(f"export path {link} is not a regular file ({_kind(path)}); give the path of a CSV file")
    for given in inputs:
        if path.exists() and Path(given).exists() and os.path.samefile(path, given):
            raise ForecastError(f"export path {link} is the input file {given}; write the output to another file")
    if parent.exists() and not parent.is_dir():
        raise ForecastError(f"export path {link}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise ForecastError(f"export path {link}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ForecastError(f"export path {link}: not writable (check the folder's permissions)")
    return path


TMP_EXTRA = len("..") + 10 + len(".") + 8 + len(".tmp")  # a temporary name: .<name>.<pid>.<random>.tmp


def check_name_length(link: Path) -> None:
    """A file name the file system refuses (usually over 255 bytes, counting the temporary file
    written beside it) is refused now, not when the export is written at the end."""
    try:
        limit = os.pathconf(link.parent if str(link.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(link.name))
    if size + TMP_EXTRA > limit:
        raise ForecastError(f"export path {link}: the file name is {size} bytes long; this file system allows "
                            f"{limit - TMP_EXTRA} for an export (its temporary file adds {TMP_EXTRA}); give a "
                            f"shorter name")


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a pipe",
             stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def write_atomic(path: str | Path, write: Callable[[IO[str]], object], encoding: str = "utf-8") -> Path:
    """``write(handle)`` into a temporary file beside ``path``, then renamed into place (see
    write_csv_atomic). A temporary file left by a killed earlier run is removed first; a disk that
    is full or read-only is a ForecastError naming the path, and leaves no temporary file."""
    path = check_writable(path)
    clear_stale_temporaries(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", newline="", encoding=encoding) as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and (problem := disk_problem(err)):
            raise ForecastError(f"cannot write {path}: {problem}; the previous file (if any) is unchanged") from None
        raise
    return path


# errors of the disk or its permissions, which the user can fix: what to tell them
DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device (free some space, or write to another disk)",
    errno.EDQUOT: "the disk quota is exceeded (free some space, or write to another disk)",
    errno.EROFS: "the file system is read-only (write to another folder)",
    errno.EACCES: "permission denied (check the folder's permissions, or write to another folder)",
    errno.EPERM: "operation not permitted (check the folder's permissions, or write to another folder)",
    errno.EIO: "an input/output error of the disk",
    errno.EFBIG: "the file is too large for this file system",
}


def disk_problem(err: BaseException | None) -> str | None:
    """What went wrong in words, when ``err`` (or what it was raised from) is a disk fault the user
    can fix; None for anything else. Libraries that wrap the OSError (torch's checkpoint writer,
    safetensors) keep its text, e.g. "No space left on device (os error 28)"."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_ERRORS:
            return DISK_ERRORS[err.errno]
        if "No space left on device" in str(err) or "os error 28" in str(err):
            return DISK_ERRORS[errno.ENOSPC]
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def disk_faults(what: str) -> Iterator[None]:
    """A disk fault inside the block (a full disk while a checkpoint or a model is saved) becomes a
    ForecastError saying what was being written and what to do, instead of an internal error."""
    try:
        yield
    except ForecastError:
        raise
    except Exception as err:
        problem = disk_problem(err)
        if problem is None:
            raise
        raise ForecastError(f"cannot write {what}: {problem}") from None


STALE_SECONDS = 60  # a temporary file without a live writer's pid, untouched this long, is left over


def clear_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files (``.<name>.<pid>.<random>.tmp``) that a killed write of ``path``
    left beside it: those whose process is gone, or (older names without a pid) untouched for a minute."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        try:
            stale = not process_alive(int(pid)) if pid.isdigit() else time.time() - tmp.stat().st_mtime > STALE_SECONDS
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask

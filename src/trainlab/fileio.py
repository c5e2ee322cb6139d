"""Atomic file writes, the run folder's lock and the cache folder.

Everything trainlab writes goes to a temporary name in the target's folder and is renamed into
place, so a crash or a full disk never leaves a half-written file behind; a write that fails
(permissions, no space) is an `OutputError` naming the file.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from trainlab.errors import OutputError

LOCK = ".lock"


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The file gets the permissions the process umask gives new files (a team can read each
    other's runs), or stays readable by its owner alone when ``private``."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    if not private:  # mkstemp makes 0600; a written file gets what open() would have given it
        os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # no space, a file-size limit: the previous file stays whole
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, private: bool = False, **kwargs: Any
) -> Iterator[IO[Any]]:
    """``open`` that only ever leaves the complete file at ``path``."""
    with atomic_path(path, private=private) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_text(path: str | os.PathLike[str], text: str, *, private: bool = False) -> None:
    with atomic_open(path, "w", private=private, encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Atomically write a file produced by ``writer(tmp_path)`` (torch.save, savefig, np.save)."""
    with atomic_path(path) as tmp:
        writer(tmp)


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``folder/.lock`` (the owner's process id and host) while a run writes ``folder``.

    A second writer is refused with an `OutputError` naming the owner. A lock whose process has
    died on this host is stale and taken over. The lock appears whole or not at all (written
    aside, then hard-linked into place, which fails if one exists). A folder made here and
    left empty (the run failed before writing anything) is removed again.
    """
    folder = Path(folder)
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the run folder {folder}: {exc.strerror or exc}") from exc
    lock = folder / LOCK
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    mine = folder / f"{LOCK}.{os.getpid()}"
    write_text(mine, json.dumps(owner), private=True)
    try:
        while True:
            try:
                os.link(mine, lock)
                break
            except FileExistsError:
                held = _live_owner(lock)
                if held is not None:
                    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(held.get("since", 0)))
                    raise OutputError(
                        f"{folder} is in use by process {held['pid']} on {held['host']} (since "
                        f"{since}); wait for it, or delete {lock} if that process is gone"
                    ) from None
                lock.unlink(missing_ok=True)  # stale: its process is gone
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        if made and not any(folder.iterdir()):
            folder.rmdir()


def _live_owner(lock: Path) -> dict[str, Any] | None:
    """The lock's owner, or None when the lock is stale: its process is gone from this host, or
    the file is unreadable or half-written by someone else's tool."""
    try:
        held = json.loads(lock.read_text())
        if not (isinstance(held.get("pid"), int) and isinstance(held.get("host"), str)):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    if held["host"] == socket.gethostname():  # another machine's process cannot be checked
        try:
            os.kill(held["pid"], 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # it exists, under another user
    return held


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def cache_dir() -> Path:
    """Where decoded data sets and statistics are cached: $TRAINLAB_CACHE or ~/.cache/trainlab."""
    path = Path(
        os.environ.get("TRAINLAB_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trainlab"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path

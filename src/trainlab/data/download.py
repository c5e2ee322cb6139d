"""Downloads that either finish whole and verified or leave nothing behind.

:func:`download` streams a URL to ``<target>.part``, resumes with an HTTP ``Range`` request when
the connection drops part-way, checks the published digest, and only then renames the file to
its final name. Every failure is a :class:`DownloadError` whose message is one line: the URL
and the cause (HTTP status, time-out, digest mismatch, short body).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from trainlab.errors import DataError

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0  # seconds without a byte before a connection counts as dead
RETRIES = 3  # reconnections, each resuming where the last one stopped


class DownloadError(DataError):
    """A download failed; the message is one line naming the URL and the cause."""


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    target: str | os.PathLike[str],
    *,
    digest: tuple[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = RETRIES,
) -> Path:
    """Fetch ``url`` to ``target``; ``digest`` is ``(algorithm, hex)``, e.g. ``("md5", "c58f...")``.

    A dropped connection is resumed from the bytes already received (``Range: bytes=N-``) up to
    ``retries`` times; a server that ignores ``Range`` is read again from the start. The bytes
    live in ``<target>.part`` until they are complete and verified; on failure that file is
    removed. A progress bar shows only where stderr is a terminal.
    """
    target = Path(target)
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _fetch(url, part, timeout, retries)
        if digest is not None:
            algorithm, want = digest
            got = file_digest(part, algorithm)
            if got != want.lower():
                raise DownloadError(f"{url}: {algorithm} {got} does not match the published {want}")
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target


def _fetch(url: str, part: Path, timeout: float, retries: int) -> None:
    from tqdm import tqdm

    part.unlink(missing_ok=True)
    total: int | None = None
    # disable=None: no bar where stderr is not a terminal
    bar = tqdm(total=None, unit="B", unit_scale=True, desc=part.stem, disable=None)
    attempt = 0
    try:
        while True:
            have = part.stat().st_size if part.exists() else 0
            request = urllib.request.Request(url, headers={"User-Agent": "trainlab"})
            if have:
                request.add_header("Range", f"bytes={have}-")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    if have and response.status != 206:  # Range ignored: start again
                        have = 0
                    if total is None:
                        length = response.headers.get("Content-Length")
                        total = bar.total = int(length) + have if length is not None else None
                    with open(part, "ab" if have else "wb") as out:
                        while block := response.read(CHUNK):
                            out.write(block)
                            bar.update(len(block))
                size = part.stat().st_size
                if total is not None and size < total:
                    raise http.client.IncompleteRead(b"", total - size)
                return
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                attempt += 1
                if attempt > retries:
                    raise DownloadError(
                        f"{url}: {_cause(exc, timeout)} after {retries} retries"
                    ) from None
            except urllib.error.URLError as exc:
                raise DownloadError(f"{url}: {_cause(exc.reason, timeout)}") from None
    finally:
        bar.close()


def _cause(exc: object, timeout: float) -> str:
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return f"no data for {timeout:g} s (timed out)"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the whole file arrived"
    return str(exc) or type(exc).__name__

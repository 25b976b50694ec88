"""Download the files of the file-based datasets from their publishers (``densbench fetch``).

Each file comes from the address :mod:`densbench.data.sources` gives for it: files published
one by one are downloaded one by one; files published inside an archive (CIFAR-10's
tarball, the MAF data archive) come from the archive, which is downloaded once into
``<data root>/.downloads/`` and kept there (delete it once every dataset it holds is
fetched), then only the members a loader reads are extracted.

What is verified: every published checksum, of a file and of an archive, before anything
takes its final name. A download is written to ``<name>.part`` beside its final name,
checked, then renamed (``os.replace``, atomic), so a loader never sees a half or unverified
file. A file whose source publishes no checksum (the ``.amat`` files of binarized MNIST) is
read in its format instead (:attr:`~densbench.data.sources.FileSpec.check`) and reported as
not verified. A broken connection is retried, resuming from the bytes already in the
``.part`` file (an HTTP ``Range`` request); after the last try the ``.part`` file is kept, so
the same command later resumes. A wrong checksum deletes the ``.part`` file.

Archives are read as a stream (one pass over a compressed tarball). Every member goes
through :func:`tarfile.data_filter` (no absolute path, no ``..``, no link out of the
folder, no device), and a member the loader reads must be a regular file; an archive that
breaks either rule is refused whole and nothing of it is kept.

A mirror replaces every publisher's scheme and host: the file published at
``https://host/PATH`` is fetched from ``<mirror>/PATH`` (:func:`mirror_url`), so a mirror
that keeps the publishers' paths serves every source, archives included.

This uses the standard library's :mod:`urllib`: the well-kept download helpers (pooch,
torchvision's) neither resume a broken download with ``Range`` nor let the caller decide
where the partial file lives, and densbench would take a new dependency for them.
"""

from __future__ import annotations

import http.client
import importlib
import os
import shutil
import ssl
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from densbench.data.root import data_root, file_digest, record_verified, verified
from densbench.data.sources import Archive, FileSpec, Source

__all__ = ["DOWNLOADS", "ENV_MIRROR", "FetchError", "Fetched", "Progress", "download",
           "extract_members", "fetch", "mirror_url"]

#: The environment variable that gives a mirror when no ``mirror`` argument does.
ENV_MIRROR = "DENSBENCH_MIRROR"
#: The folder of the data root that keeps downloaded archives.
DOWNLOADS = ".downloads"
#: ``progress(label, bytes done, total bytes or None)``, called as a download goes.
Progress = Callable[[str, int, "int | None"], None]

_CHUNK = 1 << 16
_USER_AGENT = "densbench (python urllib)"


class FetchError(ValueError):
    """A download that failed (unreachable, refused, a wrong checksum, an unsafe archive);
    one line naming the address or file and what is wrong."""


class _Dropped(Exception):
    """A transfer cut short (worth a retry that resumes it)."""


@dataclass(frozen=True)
class Fetched:
    """One dataset file after :func:`fetch`: what was done and what was verified."""

    folder: str
    path: Path
    #: "downloaded", "extracted" (from an archive) or "present" (nothing done).
    action: str
    #: What was verified, in words (says plainly when nothing could be).
    verified: str


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` fetched from ``mirror``: the mirror replaces the scheme and host.

    Example:
        >>> mirror_url("https://zenodo.org/record/1161203/files/data.tar.gz",
        ...            "http://m.example.org/densbench/")
        'http://m.example.org/densbench/record/1161203/files/data.tar.gz'
        >>> mirror_url("https://yann.lecun.com/exdb/mnist/x.gz", None)
        'https://yann.lecun.com/exdb/mnist/x.gz'
    """
    if not mirror:
        return url
    if urlsplit(mirror).scheme not in ("http", "https", "ftp", "file"):
        raise FetchError(f"mirror must be an http://, https://, ftp:// or file:// URL; "
                         f"got {mirror!r}")
    parts = urlsplit(url)
    return mirror.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _open(url: str, start: int, timeout_s: float):
    """The response to a GET of ``url`` from byte ``start``; ``None`` when the server says
    the range is past the end (the ``.part`` file already holds the whole file)."""
    headers = {"User-Agent": _USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout_s)
    except HTTPError as exc:
        if exc.code == 416 and start:
            return None
        if exc.code >= 500 or exc.code == 429:
            raise _Dropped(f"HTTP {exc.code} {exc.reason}") from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except URLError as exc:
        raise _Dropped(str(exc.reason)) from None
    except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        raise _Dropped(str(exc) or type(exc).__name__) from None


def _resumed_at(response, start: int, part: Path) -> tuple[int, int | None]:
    """Where the body of ``response`` starts in the file (``start`` for a 206 answer to
    our Range request, else 0: the server sends the whole file) and the file's size."""
    if start and response.status == 206:
        # Content-Range: bytes <first>-<last>/<size, or * when unknown>
        span = response.headers.get("Content-Range", "").partition(" ")[2]
        first, size = span.partition("-")[0], span.rpartition("/")[2]
        if first != str(start):  # not the part asked for: start again from the beginning
            part.unlink()
            raise _Dropped(f"the server sent the range {span!r}, not from byte {start}")
        return start, int(size) if size.isdigit() else None
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _transfer(url: str, part: Path, label: str, progress: Progress | None,
              timeout_s: float) -> None:
    """Download ``url`` into ``part``, continuing what is there when the server allows;
    :class:`_Dropped` if the body ends early or the connection breaks."""
    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start, timeout_s)
    if response is None:
        return
    with response:
        start, total = _resumed_at(response, start, part)
        body = response.headers.get("Content-Length")
        done = start
        with open(part, "ab" if start else "wb") as out:
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(label, done, total)
            except (http.client.HTTPException, ConnectionError, TimeoutError,
                    ssl.SSLError) as exc:
                raise _Dropped(f"{type(exc).__name__} after {done} bytes") from None
    if body and body.isdigit() and done - start < int(body):
        raise _Dropped(f"the connection closed after {done} of {start + int(body)} bytes")


def _check(part: Path, spec: FileSpec, url: str) -> str:
    """What ``part`` was verified by; a :class:`FetchError` (and ``part`` deleted) if it
    fails its checksum or, without one, its format check."""
    if spec.digest:
        got = file_digest(part, spec.algorithm)
        if got != spec.digest.lower():
            part.unlink()
            raise FetchError(f"{url}: wrong {spec.algorithm.upper()} checksum for "
                             f"{spec.path}: expected {spec.digest}, got {got} (the download "
                             "was deleted)")
        return f"{spec.expected} verified"
    if not spec.check:
        return "NOT verified: no checksum is published for this file"
    module, _, name = spec.check.partition(":")
    try:
        held = getattr(importlib.import_module(module), name)(part)
    except ValueError as exc:
        part.unlink()
        raise FetchError(f"{url}: {spec.path} is not in its source's format ({exc}; the "
                         "download was deleted)") from None
    return f"NOT verified: no checksum is published for this file; its format was read: {held}"


def download(url: str, dest: Path, spec: FileSpec, *, progress: Progress | None = None,
             retries: int = 3, backoff_s: float = 1.0, timeout_s: float = 60.0) -> str:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a broken transfer up to
    ``retries`` times (waiting ``backoff_s`` x the try's number between tries), check it
    against ``spec`` (:func:`_check`) and only then rename it to ``dest``. Returns what was
    verified; raises :class:`FetchError` (the ``.part`` file kept to resume later, unless it
    failed its check)."""
    part = _part(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, dest.name, progress, timeout_s)
            break
        except _Dropped as exc:
            if attempt == retries:
                kept = part.stat().st_size if part.exists() else 0
                raise FetchError(f"{url}: the transfer failed {retries + 1} times (last: "
                                 f"{exc}); {kept} bytes are kept in {part}: run the same "
                                 "command again to resume") from None
            time.sleep(backoff_s * (attempt + 1))
    what = _check(part, spec, url)
    os.replace(part, dest)
    return what


class _Reporting:
    """A binary file that reports how far it has been read (an archive being extracted)."""

    def __init__(self, file, label: str, total: int, progress: Progress | None) -> None:
        self.file, self.label, self.total, self.progress = file, label, total, progress

    def read(self, size: int = -1) -> bytes:
        block = self.file.read(size)
        if self.progress:
            self.progress(self.label, self.file.tell(), self.total)
        return block


def _unpack(tar: tarfile.TarFile, archive: Path, wanted: dict[str, Path],
            parts: dict[str, Path]) -> None:
    """Each wanted member of the stream ``tar`` to its destination's ``.part`` file (noted
    in ``parts``); :class:`FetchError` for a member the data filter rejects and for a wanted
    member that is not a regular file."""
    for member in tar:
        try:
            tarfile.data_filter(member, str(archive.parent))
        except tarfile.FilterError as exc:
            raise FetchError(f"{archive}: refused: member {member.name!r} ({exc}); "
                             "nothing was extracted") from None
        if member.name not in wanted:
            continue
        if not member.isfile():
            raise FetchError(f"{archive}: refused: member {member.name!r} is not a regular "
                             "file (a link or a device); nothing was extracted")
        part = _part(wanted[member.name])
        part.parent.mkdir(parents=True, exist_ok=True)
        parts[member.name] = part
        with tar.extractfile(member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def _member_parts(archive: Path, wanted: dict[str, Path],
                  progress: Progress | None) -> dict[str, Path]:
    """Read ``archive`` once as a stream (:func:`_unpack`). Returns member -> ``.part``
    written; on any failure none is left."""
    parts: dict[str, Path] = {}
    try:
        with open(archive, "rb") as raw:
            stream = _Reporting(raw, f"extracting {archive.name}", archive.stat().st_size,
                                progress)
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                _unpack(tar, archive, wanted, parts)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise FetchError(f"{archive}: not a readable tar archive ({exc})") from None
    except BaseException:
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise
    return parts


def extract_members(archive: Path, wanted: dict[str, tuple[Path, FileSpec]],
                    source_url: str, progress: Progress | None = None) -> dict[str, str]:
    """Extract the members ``wanted`` (member name -> (destination, its spec)) of the
    tarball ``archive``, each checked against its spec (:func:`_check`) before any is
    renamed to its destination; all or nothing. Returns member -> what was verified."""
    parts = _member_parts(archive, {m: dest for m, (dest, _) in wanted.items()},
                          progress)
    try:
        missing = sorted(set(wanted) - set(parts))
        if missing:
            raise FetchError(f"{archive}: has no member {missing[0]!r}; not the published "
                             "archive?")
        verdicts = {m: _check(parts[m], spec, source_url) for m, (_, spec) in wanted.items()}
    except BaseException:
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise
    for member, part in parts.items():
        os.replace(part, wanted[member][0])
    return verdicts


@dataclass
class _Options:
    root: Path
    mirror: str | None
    progress: Progress | None
    retries: int
    backoff_s: float

    def get(self, url: str, dest: Path, spec: FileSpec) -> str:
        return download(mirror_url(url, self.mirror), dest, spec, progress=self.progress,
                        retries=self.retries, backoff_s=self.backoff_s)


def _archive_path(archive: Archive, opts: _Options) -> Path:
    """The downloaded ``archive`` under the data root, fetched (and verified) if absent."""
    path = opts.root / DOWNLOADS / archive.name
    if not (path.is_file() and verified(path, archive.spec, opts.root)):
        opts.get(archive.url, path, archive.spec)
        record_verified(path, archive.spec, opts.root)
    return path


def _from_archive(archive: Archive, todo: list[tuple[Source, FileSpec]],
                  opts: _Options) -> list[Fetched]:
    """The files ``todo`` extracted from ``archive`` (downloaded first if need be)."""
    path = _archive_path(archive, opts)
    wanted = {s.members + spec.path: (opts.root / s.folder / spec.path, spec)
              for s, spec in todo}
    verdicts = extract_members(path, wanted, mirror_url(archive.url, opts.mirror),
                               opts.progress)
    out = []
    for source, spec in todo:
        dest, _ = wanted[source.members + spec.path]
        if spec.digest:
            record_verified(dest, spec, opts.root)
            what = verdicts[source.members + spec.path]
        else:
            what = (f"no checksum is published for this file; the archive {archive.name} "
                    f"it came from had its published {archive.spec.expected}")
        out.append(Fetched(source.folder, dest, "extracted", what))
    return out


def _present(source: Source, spec: FileSpec, root: Path) -> Fetched | None:
    """The file as it is, if it is there with its published checksum (or has none)."""
    path = root / source.folder / spec.path
    if not path.is_file():
        return None
    if spec.digest:
        return Fetched(source.folder, path, "present", f"{spec.expected} verified") \
            if verified(path, spec, root) else None
    return Fetched(source.folder, path, "present", "no checksum is published; not checked")


def fetch(sources: Iterable[Source], root: Path | None = None, *, mirror: str | None = None,
          progress: Progress | None = None, retries: int = 3,
          backoff_s: float = 1.0) -> list[Fetched]:
    """Download the files of ``sources`` that are missing (or fail their checksum) under
    the data root ``root`` (default :func:`~densbench.data.root.data_root`), from their
    publishers or from ``mirror`` (default ``$DENSBENCH_MIRROR``; see :func:`mirror_url`).
    Files already there are left alone; an archive is downloaded at most once for all the
    sources it serves. Returns one :class:`Fetched` per file, in the sources' order;
    raises :class:`FetchError` at the first failure (what was finished stays)."""
    opts = _Options(Path(root) if root else data_root(),
                    mirror if mirror is not None else os.environ.get(ENV_MIRROR) or None,
                    progress, retries, backoff_s)
    done: dict[tuple[str, str], Fetched] = {}
    archived: dict[Archive, list[tuple[Source, FileSpec]]] = {}
    order = [(source, spec) for source in sources for spec in source.files]
    for source, spec in order:
        present = _present(source, spec, opts.root)
        if present:
            done[source.folder, spec.path] = present
        elif source.archive:
            archived.setdefault(source.archive, []).append((source, spec))
        else:
            dest = opts.root / source.folder / spec.path
            what = opts.get(source.file_url(spec), dest, spec)
            if spec.digest:
                record_verified(dest, spec, opts.root)
            done[source.folder, spec.path] = Fetched(source.folder, dest, "downloaded", what)
    for archive, todo in archived.items():
        for (source, spec), item in zip(todo, _from_archive(archive, todo, opts), strict=True):
            done[source.folder, spec.path] = item
    return [done[source.folder, spec.path] for source, spec in order]

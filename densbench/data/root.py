"""The data root (where dataset files are placed by hand or by ``densbench fetch``) and
checksum verification.

The root is, in order: the folder given to :func:`set_data_root` (the CLI's ``--data-root``,
passed on to worker processes through the environment), ``$DENSBENCH_DATA_ROOT``, the
``datasets/`` folder of the checkout densbench runs from (an editable install), else
``./datasets``. Each file's checksum is computed once; the verdict is cached in memory and in
``<root>/.densbench-checksums.json``, keyed by the file's absolute path, size and
modification time, so a changed file is checked again.

Checksums can be turned off with ``$DENSBENCH_VERIFY_CHECKSUMS=0`` (for small files made
in the source's format, as the tests do); a file that exists is then taken as it is. Neither
that setting nor the cache (which anyone who can write the data root can edit) is a
safeguard against a crafted file: the pickled sources are read by a restricted unpickler
that runs nothing a file names (:mod:`densbench.data.pickles`), checksum or not.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from densbench.data.sources import SOURCES, FileSpec, Source

__all__ = ["DataFileError", "ENV_ROOT", "ENV_VERIFY", "data_file_error", "data_root",
           "file_digest", "folder_status", "record_verified", "require", "set_data_root",
           "verified"]

ENV_ROOT = "DENSBENCH_DATA_ROOT"
ENV_VERIFY = "DENSBENCH_VERIFY_CHECKSUMS"
_CACHE_NAME = ".densbench-checksums.json"
_verdicts: dict[tuple[str, int, int, str], bool] = {}


class DataFileError(ValueError):
    """A dataset file that is missing, has the wrong checksum or cannot be read; the message
    is one line naming the file, its folder, where it is published and its checksum."""


def set_data_root(path: str | os.PathLike) -> None:
    """Use ``path`` as the data root in this process and the processes it starts."""
    os.environ[ENV_ROOT] = str(Path(path).expanduser().resolve())


def data_root() -> Path:
    """The data root (see the module docstring); it need not exist."""
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "datasets").is_dir():
        return checkout / "datasets"
    return Path.cwd() / "datasets"


def data_file_error(source: Source, spec: FileSpec, problem: str,
                    root: Path | None = None) -> DataFileError:
    """The one-line error for ``spec`` of ``source``: ``problem`` and how to put it right.

    Example:
        >>> src = SOURCES["mnist"]
        >>> print(data_file_error(src, src.files[0], "missing", Path("/data")))
        ... # doctest: +NORMALIZE_WHITESPACE
        /data/mnist/train-images-idx3-ubyte.gz: missing; run `densbench fetch mnist` or
        place the file train-images-idx3-ubyte.gz in /data/mnist/ (published at
        https://yann.lecun.com/exdb/mnist/; expected MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873)
    """
    folder = (root or data_root()) / source.folder
    note = f"; {source.note}" if source.note else ""
    return DataFileError(f"{folder / spec.path}: {problem}; run `densbench fetch "
                         f"{source.folder}` or place the file {spec.path} in {folder}/ "
                         f"(published at {source.url}; expected {spec.expected}{note})")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of the file at ``path`` (read in 1 MiB blocks)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_file(root: Path) -> Path:
    return root / _CACHE_NAME


def _read_cache(root: Path) -> dict[str, bool]:
    try:
        raw = json.loads(_cache_file(root).read_text())
        return {str(k): bool(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(root: Path, entries: dict[str, bool]) -> None:
    tmp = _cache_file(root).with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(entries, indent=0, sort_keys=True))
        os.replace(tmp, _cache_file(root))
    except OSError:  # a read-only data root: the verdict is kept in memory only
        tmp.unlink(missing_ok=True)


def _verdict_key(path: Path, spec: FileSpec) -> tuple[str, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, f"{spec.algorithm}:{spec.digest}")


def record_verified(path: Path, spec: FileSpec, root: Path) -> None:
    """Cache that ``path`` (just checked against ``spec``'s checksum, e.g. by a download)
    has it, so that loading it does not read the file again."""
    key = _verdict_key(path, spec)
    disk = _read_cache(root)
    disk["|".join(map(str, key))] = True
    _write_cache(root, disk)
    _verdicts[key] = True


def verified(path: Path, spec: FileSpec, root: Path) -> bool:
    """Whether the file at ``path`` has ``spec``'s checksum (the verdict cached)."""
    key = _verdict_key(path, spec)
    if key in _verdicts:
        return _verdicts[key]
    disk = _read_cache(root)
    text_key = "|".join(map(str, key))
    if text_key not in disk:
        disk[text_key] = file_digest(path, spec.algorithm) == spec.digest.lower()
        _write_cache(root, disk)
    _verdicts[key] = disk[text_key]
    return _verdicts[key]


def _verify_enabled() -> bool:
    return os.environ.get(ENV_VERIFY, "1").strip().lower() not in ("0", "false", "no", "off")


def require(folder: str, *, verify: bool | None = None) -> dict[str, Path]:
    """The paths of dataset ``folder``'s files (relative name -> path), each checked to exist
    and, unless ``verify`` is false (default: ``$DENSBENCH_VERIFY_CHECKSUMS``), to have its
    published checksum. Raises :class:`DataFileError` for the first file that fails.
    """
    source = SOURCES[folder]
    root = data_root()
    check = _verify_enabled() if verify is None else verify
    out: dict[str, Path] = {}
    for spec in source.files:
        path = root / source.folder / spec.path
        if not path.is_file():
            raise data_file_error(source, spec, "missing", root)
        if check and spec.digest and not verified(path, spec, root):
            raise data_file_error(source, spec, f"wrong {spec.algorithm.upper()} checksum "
                                  "(a corrupted or different file)", root)
        out[spec.path] = path
    return out


def folder_status(folder: str) -> str:
    """``"present"`` when every file of dataset ``folder`` exists under the data root, else
    ``"missing"`` (existence only: checksums are checked when the data are loaded)."""
    source = SOURCES[folder]
    base = data_root() / source.folder
    return "present" if all((base / s.path).is_file() for s in source.files) else "missing"

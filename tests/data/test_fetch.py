"""``densbench fetch`` against a real HTTP server on 127.0.0.1 serving format-true files:
downloads checked against the checksums given in the :class:`Source` (the test's sources
stand in for the published ones, whose real files these small ones are not), resumed after
a dropped connection, refused on a wrong checksum, a 404 or an unsafe archive member."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

import densbench as db
from densbench.cli import main
from densbench.data import root as R
from densbench.data.fetch import ENV_MIRROR, FetchError, fetch, mirror_url
from densbench.data.sources import SOURCES, Archive, FileSpec, Source
from tests.data import formats as F


@dataclass
class _Server:
    """What the handler serves and how it misbehaves; what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)   # send half the body, then hang up
    drop_always: set[str] = field(default_factory=set)
    wrong: set[str] = field(default_factory=set)       # serve other bytes of the same size
    no_range: set[str] = field(default_factory=set)    # ignore Range: send the whole file
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base: str = ""

    def gets(self, path: str) -> list[str | None]:
        """The Range header of each request for ``path`` (None: none sent)."""
        return [rng for p, rng in self.requests if p == path]


def _handler(state: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path, rng = urlsplit(self.path).path, self.headers.get("Range")
            state.requests.append((path, rng))
            body = state.files.get(path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            if path in state.wrong:
                body = bytes(b ^ 0xFF for b in body)
            if path in state.no_range:
                rng = None
            start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            rest = body[start:]
            if path in state.drop_always or path in state.drop_once:
                state.drop_once.discard(path)
                rest = rest[: len(rest) // 2]  # then the handler returns: the socket closes
            self.wfile.write(rest)

    return Handler


@pytest.fixture
def server():
    state = _Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,),
                              daemon=True)
    thread.start()
    try:
        state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty data root, checksums verified (the default)."""
    monkeypatch.setenv(R.ENV_ROOT, str(tmp_path / "data"))
    monkeypatch.delenv(R.ENV_VERIFY, raising=False)
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    return tmp_path / "data"


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def _serve_idx(server: _Server, tmp_path: Path, url_path: str = "/exdb/mnist/") -> dict:
    """MNIST's four IDX files served under ``url_path``; returns what they hold."""
    wrote = F.write_idx_set(tmp_path / "src", n_train=60, n_test=20)
    for f in sorted((tmp_path / "src").iterdir()):
        server.files[url_path + f.name] = f.read_bytes()
    return wrote


def _idx_source(server: _Server, url: str, url_path: str = "/exdb/mnist/") -> Source:
    return Source("mnist", url, tuple(
        FileSpec(spec.path, "md5", _md5(server.files[url_path + spec.path]))
        for spec in SOURCES["mnist"].files))


def _no_parts(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part"))


def test_idx_files_download_verified_and_the_loader_reads_them(server, root, tmp_path,
                                                               monkeypatch):
    wrote = _serve_idx(server, tmp_path)
    source = _idx_source(server, server.base + "/exdb/mnist/")
    monkeypatch.setitem(SOURCES, "mnist", source)  # the checksums the loader verifies
    seen = []
    got = fetch([source], root, progress=lambda label, done, total: seen.append(
        (label, done, total)))
    assert [f.action for f in got] == ["downloaded"] * 4
    assert all(f.verified.startswith("MD5 ") and f.verified.endswith("verified") for f in got)
    assert seen[-1][1] == seen[-1][2] == len(server.files["/exdb/mnist/t10k-labels-idx1-ubyte.gz"])
    assert not _no_parts(root)
    ds = db.data.load("mnist")
    np.testing.assert_array_equal(ds.native("test"), wrote["test"].reshape(20, 784))
    # a second fetch finds the files and asks the server for nothing
    n = len(server.requests)
    assert [f.action for f in fetch([source], root)] == ["present"] * 4
    assert len(server.requests) == n


def _tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def _maf_like(server: _Server, tmp_path: Path, **extra) -> tuple[Archive, dict[str, bytes]]:
    """A small data.tar.gz laid out as the MAF archive (data/<set>/...), served."""
    F.write_hepmass(tmp_path / "src" / "hepmass")
    F.write_miniboone(tmp_path / "src" / "miniboone")
    members = {f"data/{d}/{f.name}": f.read_bytes()
               for d in ("hepmass", "miniboone") for f in (tmp_path / "src" / d).iterdir()}
    members["data/mnist/other.txt"] = b"a member no loader reads"
    server.files["/record/1/files/data.tar.gz"] = _tar_gz(members, **extra)
    archive = Archive(server.base + "/record/1/files/data.tar.gz", "md5",
                      _md5(server.files["/record/1/files/data.tar.gz"]), "a test archive")
    return archive, members


def _maf_sources(archive: Archive) -> list[Source]:
    return [Source(name, archive.url, SOURCES[name].files, archive=archive,
                   members=SOURCES[name].members) for name in ("uci_hepmass", "uci_miniboone")]


def test_an_archive_is_downloaded_once_and_its_members_extracted(server, root, tmp_path):
    archive, members = _maf_like(server, tmp_path)
    seen = {}
    got = fetch(_maf_sources(archive), root,
                progress=lambda label, done, total: seen.__setitem__(label, (done, total)))
    assert server.gets("/record/1/files/data.tar.gz") == [None]  # one download, two sets
    size = len(server.files["/record/1/files/data.tar.gz"])
    assert seen == {"data.tar.gz": (size, size), "extracting data.tar.gz": (size, size)}
    assert (root / ".downloads" / "data.tar.gz").stat().st_size == size  # kept for later
    assert [(f.folder, f.path.name, f.action) for f in got] == [
        ("uci_hepmass", "1000_train.csv", "extracted"),
        ("uci_hepmass", "1000_test.csv", "extracted"),
        ("uci_miniboone", "data.npy", "extracted")]
    assert "archive data.tar.gz it came from had its published MD5" in got[0].verified
    assert (root / "uci_hepmass" / "1000_test.csv").read_bytes() == \
        members["data/hepmass/1000_test.csv"]
    assert not (root / "uci_mnist").exists() and not _no_parts(root)
    assert db.data.load("uci_miniboone").dim == 43 and db.data.load("uci_hepmass").dim == 21


def test_a_dropped_connection_is_resumed_with_a_range_request(server, root, tmp_path):
    _serve_idx(server, tmp_path)
    source = _idx_source(server, server.base + "/exdb/mnist/")
    path = "/exdb/mnist/train-images-idx3-ubyte.gz"
    server.drop_once.add(path)
    fetch([source], root, backoff_s=0)
    half = len(server.files[path]) // 2
    assert server.gets(path) == [None, f"bytes={half}-"]
    assert (root / "mnist" / "train-images-idx3-ubyte.gz").read_bytes() == server.files[path]
    assert not _no_parts(root)


def test_a_server_that_ignores_range_sends_the_whole_file_again(server, root, tmp_path):
    _serve_idx(server, tmp_path)
    source = _idx_source(server, server.base + "/exdb/mnist/")
    path = "/exdb/mnist/train-labels-idx1-ubyte.gz"
    final = root / "mnist" / "train-labels-idx1-ubyte.gz"
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(b"stale bytes of an earlier try")
    server.no_range.add(path)
    fetch([source], root)
    assert server.gets(path) == ["bytes=29-"]  # asked to resume, answered 200: start over
    assert final.read_bytes() == server.files[path] and not _no_parts(root)


def test_a_transfer_that_keeps_failing_keeps_its_part_file_to_resume_later(server, root,
                                                                           tmp_path):
    _serve_idx(server, tmp_path)
    source = _idx_source(server, server.base + "/exdb/mnist/")
    path = "/exdb/mnist/train-images-idx3-ubyte.gz"
    server.drop_always.add(path)
    with pytest.raises(FetchError, match="the transfer failed 2 times .* run the same command "
                                         "again to resume"):
        fetch([source], root, retries=1, backoff_s=0)
    final = root / "mnist" / "train-images-idx3-ubyte.gz"
    assert not final.exists() and _no_parts(root) == [final.with_name(final.name + ".part")]
    server.drop_always.clear()
    fetch([source], root)  # the next command resumes where the last try stopped
    assert server.gets(path)[-1].startswith("bytes=") and final.read_bytes() == server.files[path]


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_fetch_then_list_shows_the_dataset_present(server, root, tmp_path, monkeypatch,
                                                       capsys):
    _serve_idx(server, tmp_path)
    monkeypatch.setitem(SOURCES, "mnist", _idx_source(server, server.base + "/exdb/mnist/"))
    rc, out, err = _cli(capsys, "fetch", "mnist", "digits", "--data-root", str(root),
                        "--no-progress")
    assert rc == 0, err
    assert "digits: needs no download" in out
    assert f"{root}/mnist/train-images-idx3-ubyte.gz: downloaded; MD5 " in out
    assert "4 files under" in out and "4 downloaded" in out
    rc, out, _ = _cli(capsys, "list", "--data-root", str(root))
    assert rc == 0 and "[present]" in next(line for line in out.splitlines()
                                           if line.strip().startswith("mnist "))


def test_cli_wrong_checksum_exits_2_and_leaves_nothing_under_the_final_name(
        server, root, tmp_path, monkeypatch, capsys):
    _serve_idx(server, tmp_path)
    monkeypatch.setitem(SOURCES, "mnist", _idx_source(server, server.base + "/exdb/mnist/"))
    path = "/exdb/mnist/t10k-images-idx3-ubyte.gz"
    server.wrong.add(path)
    rc, out, err = _cli(capsys, "fetch", "mnist", "--data-root", str(root), "--no-progress")
    got = _md5(bytes(b ^ 0xFF for b in server.files[path]))
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert (f"{server.base}{path}: wrong MD5 checksum for t10k-images-idx3-ubyte.gz: expected "
            f"{_md5(server.files[path])}, got {got}") in err
    assert not (root / "mnist" / "t10k-images-idx3-ubyte.gz").exists() and not _no_parts(root)


def test_cli_404_exits_2_in_one_line(server, root, monkeypatch, capsys):
    monkeypatch.setitem(SOURCES, "mnist", Source("mnist", server.base + "/gone/", (
        FileSpec("train-images-idx3-ubyte.gz", "md5", "0" * 32),)))
    rc, _, err = _cli(capsys, "fetch", "mnist", "--data-root", str(root), "--no-progress")
    assert rc == 2 and err == (f"densbench: error: {server.base}/gone/train-images-idx3-ubyte"
                               ".gz: HTTP 404 Not Found\n")
    assert not (root / "mnist").exists() or not any((root / "mnist").iterdir())


def test_cli_unknown_dataset_exits_2_naming_the_known_ones(root, capsys):
    rc, out, err = _cli(capsys, "fetch", "digits", "nope")
    assert rc == 2 and not out
    assert err.startswith("densbench: error: unknown dataset 'nope'; datasets with files to "
                          "fetch: binarized_mnist, cifar10,")


@pytest.mark.parametrize("how", ["env", "option"])
def test_a_mirror_replaces_the_publishers_scheme_and_host(server, root, tmp_path, monkeypatch,
                                                         capsys, how):
    _serve_idx(server, tmp_path, url_path="/mirror/exdb/mnist/")
    source = _idx_source(server, "https://publisher.invalid/exdb/mnist/", "/mirror/exdb/mnist/")
    monkeypatch.setitem(SOURCES, "mnist", source)
    args = ["fetch", "mnist", "--data-root", str(root), "--no-progress"]
    if how == "env":
        monkeypatch.setenv(ENV_MIRROR, server.base + "/mirror")
    else:
        args += ["--mirror", server.base + "/mirror/"]
    rc, _, err = _cli(capsys, *args)
    assert rc == 0, err
    assert len(server.gets("/mirror/exdb/mnist/train-images-idx3-ubyte.gz")) == 1
    assert R.folder_status("mnist") == "present"


def test_mirror_paths_of_the_published_sources_are_distinct():
    # A mirror keeps the publishers' paths: no two published files may share one.
    urls = {s.archive.url if s.archive else s.file_url(f)
            for s in SOURCES.values() for f in s.files}
    paths = [urlsplit(mirror_url(u, "http://m")).path for u in urls]
    assert len(set(paths)) == len(paths)
    assert mirror_url(SOURCES["uci_gas"].url, "http://m/x") == \
        "http://m/x/record/1161203/files/data.tar.gz"


@pytest.mark.parametrize("bad", [{"members": {"../x": b"outside"}},
                                 {"links": {"data/miniboone/data.npy": "/etc/passwd"}},
                                 {"links": {"data/hepmass/1000_test.csv": "1000_train.csv"}}])
def test_an_unsafe_archive_member_is_refused_and_nothing_extracted(server, root, tmp_path,
                                                                   bad):
    F.write_miniboone(tmp_path / "src")
    members = {"data/miniboone/data.npy": (tmp_path / "src" / "data.npy").read_bytes(),
               "data/hepmass/1000_train.csv": b"# label,a\n1,2\n",
               **bad.get("members", {})}
    if "data/miniboone/data.npy" in bad.get("links", {}):
        del members["data/miniboone/data.npy"]
    server.files["/a.tar.gz"] = _tar_gz(members, bad.get("links"))
    archive = Archive(server.base + "/a.tar.gz", "md5", _md5(server.files["/a.tar.gz"]), "t")
    sources = [Source("uci_miniboone", archive.url, SOURCES["uci_miniboone"].files,
                      archive=archive, members="data/miniboone/")]
    if "data/hepmass/1000_test.csv" in bad.get("links", {}):  # a link inside the archive
        sources = [Source("uci_hepmass", archive.url, SOURCES["uci_hepmass"].files,
                          archive=archive, members="data/hepmass/")]
    with pytest.raises(FetchError, match="refused: member '(../x|data/.*)'"):
        fetch(sources, root)
    assert not (root / "uci_miniboone").exists() or not any((root / "uci_miniboone").iterdir())
    assert not (root / "uci_hepmass" / "1000_train.csv").exists() and not _no_parts(root)
    assert not (root / "x").exists() and not (tmp_path / "x").exists()


def test_amat_files_have_no_checksum_so_their_format_is_read_and_said(server, root,
                                                                      tmp_path):
    F.write_amat(tmp_path / "src", rows=(5, 3, 4))
    for f in (tmp_path / "src").iterdir():
        server.files["/bm/" + f.name] = f.read_bytes()
    source = Source("binarized_mnist", server.base + "/bm/", SOURCES["binarized_mnist"].files)
    got = fetch([source], root)
    assert got[0].verified == ("NOT verified: no checksum is published for this file; its "
                               "format was read: 5 rows of 784 values, all 0 or 1")
    (root / "binarized_mnist" / "binarized_mnist_test.amat").unlink()
    server.files["/bm/binarized_mnist_test.amat"] = b"0 1 7\n"
    with pytest.raises(FetchError, match=r"binarized_mnist_test.amat is not in its source's "
                                         r"format \(unexpected byte b'7'"):
        fetch([source], root)
    assert not (root / "binarized_mnist" / "binarized_mnist_test.amat").exists()
    assert not _no_parts(root)


@pytest.mark.slow
def test_run_download_fetches_the_suites_missing_files_first(server, root, tmp_path,
                                                             monkeypatch, capsys):
    archive, _ = _maf_like(server, tmp_path)
    for source in _maf_sources(archive):
        monkeypatch.setitem(SOURCES, source.folder, source)
    rc, out, err = _cli(capsys, "run", "--estimators", "gaussian", "--datasets",
                        "uci_miniboone", "--seeds", "1", "--download", "--no-progress",
                        "--executor", "inprocess", "--data-root", str(root),
                        "--out", str(tmp_path / "run"))
    assert rc == 0, err
    assert f"{root}/uci_miniboone/data.npy: extracted" in out
    assert "1 cells: 1 ran (1 ok, 0 failed)" in out
    assert not (root / "uci_hepmass").exists()  # only the suite's datasets


def test_an_archive_that_is_not_a_tarball_is_refused_in_one_line(server, root):
    server.files["/a.tar.gz"] = b"<html>not found</html>"
    archive = Archive(server.base + "/a.tar.gz", "md5", _md5(server.files["/a.tar.gz"]), "t")
    source = Source("uci_miniboone", archive.url, SOURCES["uci_miniboone"].files,
                    archive=archive, members="data/miniboone/")
    with pytest.raises(FetchError, match=r"a.tar.gz: not a readable tar archive \("):
        fetch([source], root)
    assert not (root / "uci_miniboone").exists() and not _no_parts(root)

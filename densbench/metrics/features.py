"""Feature spaces for the Frechet distance on images: the penultimate layer of a small
classifier trained on the dataset's training split and labels.

The classifier (scikit-learn ``MLPClassifier`` with one hidden layer of 64 ReLU units on
standardized pixels, ``random_state=0``) is trained deterministically once per dataset,
parameters and seed, and its weights are cached on disk (``$DENSBENCH_CACHE`` or
``~/.cache/densbench``), written atomically. The features of an image are its 64 hidden
activations.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from densbench.data.base import Dataset

__all__ = ["cache_dir", "classifier_features"]

HIDDEN = 64


def cache_dir() -> Path:
    return Path(os.environ.get("DENSBENCH_CACHE", Path.home() / ".cache" / "densbench"))


def classifier_features(ds: Dataset) -> Callable[[np.ndarray], np.ndarray] | None:
    """The feature map of ``ds`` (None when the dataset has no training labels)."""
    if not ds.labels or "train" not in ds.labels:
        return None
    key = hashlib.sha256(json.dumps([ds.name, ds.params, ds.seed, HIDDEN],
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"features-{ds.name}-{key}.npz"
    if path.is_file():
        z = np.load(path)
        mean, scale, W, b = z["mean"], z["scale"], z["W"], z["b"]
    else:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        mean = ds.train.mean(axis=0)
        scale = np.where(ds.train.std(axis=0) > 0, ds.train.std(axis=0), 1.0)
        clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=300, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit((ds.train - mean) / scale, ds.labels["train"])
        W, b = clf.coefs_[0], clf.intercepts_[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        np.savez(tmp, mean=mean, scale=scale, W=W, b=b)
        os.replace(tmp, path)

    def features(X: np.ndarray) -> np.ndarray:
        return np.maximum(((np.asarray(X, dtype=np.float64) - mean) / scale) @ W + b, 0.0)

    return features

import numpy as np

import densbench as db
from densbench.metrics.features import classifier_features
from densbench.metrics.samples import frechet_distance


def test_classifier_features_are_cached_and_separate_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSBENCH_CACHE", str(tmp_path))
    ds = db.data.load("digits", seed=0)
    f = classifier_features(ds)
    assert len(list(tmp_path.glob("features-digits-*.npz"))) == 1
    g = classifier_features(ds)  # from the cache: the same map
    np.testing.assert_array_equal(f(ds.test), g(ds.test))
    assert f(ds.test).shape == (360, 64)
    # held-out images of the same digits are close in feature space, other digits are not
    same = frechet_distance(ds.val, ds.test, features=f).value
    y = ds.labels["test"]
    skewed = frechet_distance(ds.test[y < 5], ds.test[y >= 5], features=f).value
    assert skewed > 5 * same


def test_no_labels_no_features():
    assert classifier_features(db.data.load("banana", n_train=10, n_val=5, n_test=5)) is None

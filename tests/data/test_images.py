import numpy as np
import pytest

import densbench as db


def test_digits_split_is_fixed_disjoint_and_complete():
    a, b, c = (db.data.load("digits", seed=s) for s in (0, 0, 1))
    assert (a.train.shape, a.val.shape, a.test.shape) == ((1257, 64), (180, 64), (360, 64))
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)
    assert a.kind == "discrete" and a.levels == 17 and a.image_shape == (8, 8)
    assert a.sequence_shape == (8, 8)  # 8 rows of 8 pixels, for sequence models
    allx = np.vstack([a.train, a.val, a.test])
    assert set(np.unique(allx)) <= set(range(17))
    # every image exactly once: compare with the bundled data as multisets of rows
    from sklearn.datasets import load_digits

    ref = np.asarray(load_digits().data, dtype=np.float64)
    assert sorted(map(tuple, allx)) == sorted(map(tuple, ref))
    assert a.log_prob(a.test) is None
    assert set(a.labels) == {"train", "val", "test"} and len(a.labels["test"]) == 360


def test_digits_bad_params():
    with pytest.raises(ValueError, match="dataset digits: n_test"):
        db.data.load("digits", n_test=0)
    with pytest.raises(ValueError, match="dataset digits: unknown parameter"):
        db.data.load("digits", n_testt=5)

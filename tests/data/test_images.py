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


def test_mnist5k_binarized_variants_keep_the_split_and_state_the_protocol():
    from densbench.data.images import MNIST5K_BINARIZATION_SEED

    grey = db.data.load("mnist5k", seed=0)
    fixed0, fixed1 = (db.data.load("binarized_mnist5k", seed=s) for s in (0, 1))
    dyn0, dyn0b = (db.data.load("mnist5k", seed=0, binarize="dynamic") for _ in range(2))
    for ds in (fixed0, dyn0):
        assert ds.kind == "discrete" and ds.levels == 2 and ds.image_shape == (28, 28)
        assert set(np.unique(ds.train)) == {0.0, 1.0} and ds.native("train").dtype == np.uint8
        np.testing.assert_array_equal(ds.labels["test"], grey.labels["test"])  # same split
        # a pixel is 1 with probability grey / 255: dark pixels stay 0, the mean matches
        assert not ds.train[grey.train == 0].any()
        assert abs(ds.train.mean() - grey.train.mean() / 255) < 0.002
    # fixed: one draw of each image, whatever the split seed; dynamic: a draw per seed
    rows0 = {tuple(r) for r in np.vstack([fixed0.train, fixed0.val, fixed0.test])}
    assert {tuple(r) for r in fixed1.test} <= rows0
    np.testing.assert_array_equal(dyn0.train, dyn0b.train)
    assert not np.array_equal(dyn0.test, fixed0.test)
    assert dyn0.params["binarize"] == "dynamic" and "binarize" not in grey.params
    assert str(MNIST5K_BINARIZATION_SEED) in fixed0.protocol["binarization"]
    assert fixed0.protocol["binarization"].startswith("fixed: one Bernoulli(x / 255) draw")
    assert "afresh at every epoch" in dyn0.protocol["binarization"]
    # the grey levels of the dynamic set's training images: train is one draw of them
    np.testing.assert_array_equal(dyn0.train_means, grey.train / 255)
    assert fixed0.train_means is None and grey.train_means is None
    assert "binarization" not in grey.protocol and grey.logit_lambda == 1e-6
    with pytest.raises(ValueError, match="dataset mnist5k: binarize must be None or "
                       "'dynamic'; got 'fixed'"):
        db.data.load("mnist5k", binarize="fixed")

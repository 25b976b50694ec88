"""pixelcnn: exact normalization by enumeration, a causal receptive field with no blind spot
(channel order included), seeded sampling from the model's own law, learning structure an
independent-pixel model cannot, bad settings refused. Each check is also run on a broken
variant of the network (monkeypatched) to show that it catches what it is for."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from densbench.estimators.images import pixelcnn
from densbench.estimators.images.pixelcnn import PixelCNN

TINY = {"n_layers": 2, "channels": 8, "kernel_size": 3, "first_kernel_size": 3,
        "batch_size": 64}
MIXTURE = {"output": "logistic_mixture", "n_mixture": 3}


def _random_images(n, shape, levels, seed=0):
    """Images whose pixels copy the pixel above or to the left most of the time: a law
    with dependence for a brief training to pick up."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=(n, *shape))
    copy = rng.random(size=x.shape) < 0.7
    for i, j in itertools.product(range(shape[0]), range(shape[1])):
        src = x[:, i - 1, j] if i else (x[:, i, j - 1] if j else x[:, i, j])
        x[:, i, j] = np.where(copy[:, i, j], src, x[:, i, j])
    return x.reshape(n, -1).astype(np.float64)


def _fit(shape, levels, *, epochs=1, n=64, **params):
    X = _random_images(n, shape, levels)
    return PixelCNN(levels=levels, image_shape=shape, max_epochs=epochs,
                    **{**TINY, **params}).fit(X, X[: n // 4])


def _randomize(est, seed=0):
    """Weights far from any training (a strongly dependent, untrained network)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in est.module_.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    return est


def _break(monkeypatch, variant):
    """Monkeypatch the network's pieces into a known-broken PixelCNN (None: as it is)."""
    strict_always = {"mask_b_first": False, "mask_a_always": True}
    if variant in strict_always:
        original = pixelcnn._centre_mask
        monkeypatch.setattr(pixelcnn, "_centre_mask", lambda o, i, strict: original(
            o, i, strict_always[variant]))
    elif variant == "no_shift":          # the horizontal stack reads its own row's right
        monkeypatch.setattr(pixelcnn, "_down", lambda x: x)
    elif variant == "two_row_shift":     # a blind spot: the row above unseen
        monkeypatch.setattr(pixelcnn, "_down",
                            lambda x: torch.nn.functional.pad(x, (0, 0, 2, 0))[:, :, :-2])
    elif variant == "no_vertical":       # the rows above unseen
        monkeypatch.setattr(pixelcnn, "_down", torch.zeros_like)
    elif variant == "own_rng":           # draws from a generator of their own
        own = torch.Generator().manual_seed(0)
        monkeypatch.setattr(pixelcnn, "_draw", lambda logits, generator: torch.multinomial(
            torch.softmax(logits, -1), 1, generator=own).squeeze(-1).float())
    elif variant == "greedy":            # the most likely level, not a draw
        monkeypatch.setattr(pixelcnn, "_draw", lambda logits, generator:
                            logits.argmax(-1).float())
    elif variant == "bins_off_by_one":   # level x scored on the bin of x + 1
        bin_of = pixelcnn._LogisticMixture._bin
        monkeypatch.setattr(pixelcnn._LogisticMixture, "_bin",
                            lambda self, x, mu, log_s: bin_of(self, x + 1, mu, log_s))
    elif variant == "draws_off_by_one":  # the level above the bin drawn
        draw = pixelcnn._LogisticMixture.draw
        monkeypatch.setattr(pixelcnn._LogisticMixture, "draw", lambda self, p, g: (
            draw(self, p, g) + 1).clamp(max=self.levels - 1))
    else:
        assert variant is None


def _every(d, levels):
    return np.array(list(itertools.product(range(levels), repeat=d)), dtype=np.float64)


# -- exact normalization ------------------------------------------------------------------

def _total_probability(est, d, levels):
    return float(np.exp(est.score_samples(_every(d, levels))).sum())


@pytest.mark.parametrize("trained", [False, True], ids=["untrained", "trained"])
@pytest.mark.parametrize(("shape", "levels", "output"), [
    ((2, 2), 2, {}), ((2, 2), 3, {}), ((2, 2, 3), 2, {}),
    ((2, 2), 3, MIXTURE), ((1, 2, 3), 4, MIXTURE)])
def test_probabilities_of_every_tiny_image_sum_to_one(shape, levels, output, trained):
    est = _fit(shape, levels, epochs=15 if trained else 1, n=256, lr=3e-3, **output)
    if not trained:
        _randomize(est)
    d = int(np.prod(shape))
    assert _total_probability(est, d, levels) == pytest.approx(1.0, abs=1e-5)
    if trained:  # it learned something: its training images beat uniform levels
        assert est.score(_random_images(256, shape, levels)) > -d * np.log(levels) + 0.1


@pytest.mark.parametrize(("shape", "levels", "variant", "output"), [
    ((2, 2), 2, "mask_b_first", {}), ((2, 2, 3), 2, "mask_b_first", {}),
    ((2, 2), 3, "bins_off_by_one", MIXTURE)])
def test_normalization_fails_on_a_broken_model(monkeypatch, shape, levels, variant, output):
    _break(monkeypatch, variant)
    est = _randomize(_fit(shape, levels, channels=24, **output))
    assert abs(_total_probability(est, int(np.prod(shape)), levels) - 1.0) > 1e-2


# -- the receptive field ------------------------------------------------------------------

def _dependence(est, n_inputs=3):
    """dep[a, b]: the logits of sub-pixel a (rows' order: raster, channels inside) move
    with the input sub-pixel b, for any of a few random images (float64 network)."""
    module = est.module_.double()
    d, levels = est.n_features_in_, int(est.levels)
    rng = np.random.default_rng(0)
    dep = np.zeros((d, d), dtype=bool)
    for _ in range(n_inputs):
        rows = torch.tensor(rng.integers(0, levels, size=(1, d)), dtype=torch.float64)

        def logits_of(r):
            out = module(est._encode(est._images(r)))               # (1, L, C, H, W)
            return out.permute(0, 3, 4, 2, 1).reshape(d, levels)    # rows' order

        jac = torch.autograd.functional.jacobian(logits_of, rows)   # (d, L, 1, d)
        dep |= (jac.abs().sum(dim=(1, 2)) > 0).numpy()
    est.module_.float()
    return dep


def _check_causal(est):
    dep = _dependence(est)
    before = np.tril(np.ones_like(dep), k=-1)          # b < a
    leaks = np.argwhere(dep & ~before)
    assert not len(leaks), f"leak: sub-pixel {leaks[0][0]} reads {leaks[0][1]}"
    missed = np.argwhere(before & ~dep)
    assert not len(missed), f"blind spot: sub-pixel {missed[0][0]} ignores {missed[0][1]}"


#: (image shape, layers) whose receptive field covers every earlier sub-pixel. (24 hidden
#: channels: 8 a colour group, so that the head's ReLUs are not all off at any pixel, which
#: would cut a dependence the network has.)
_FIELDS = [((5, 5), 4), ((3, 3, 3), 3)]


@pytest.mark.parametrize(("shape", "n_layers"), _FIELDS)
def test_each_subpixel_reads_exactly_the_subpixels_before_it(shape, n_layers):
    _check_causal(_fit(shape, 3, n_layers=n_layers, channels=24))


@pytest.mark.parametrize(("shape", "n_layers"), _FIELDS)
@pytest.mark.parametrize(("variant", "caught"), [
    ("mask_b_first", "leak"), ("no_shift", "leak"), ("two_row_shift", "blind spot"),
    ("mask_a_always", "blind spot")])
def test_causality_check_catches_a_broken_network(monkeypatch, shape, n_layers, variant,
                                                  caught):
    if variant == "mask_a_always" and len(shape) == 2:
        pytest.skip("grey images: mask A and B differ only across colour channels")
    _break(monkeypatch, variant)
    with pytest.raises(AssertionError, match=caught):
        _check_causal(_fit(shape, 3, n_layers=n_layers, channels=24))


# -- sampling -----------------------------------------------------------------------------

def _row_by_row(est, X):
    """The logits of every sub-pixel of rows X as the sampler computes them (a row at a
    time, each pixel from the columns that reach it, the vertical stack fed row by row),
    (n, L, C, H, W)."""
    net = est.module_
    x = est._images(torch.as_tensor(X, dtype=torch.float32))
    out = torch.zeros((x.shape[0], int(est.levels), *x.shape[1:]))
    with torch.no_grad():
        context, history = net.first_context(x.shape[0], x.shape[3])
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                start = max(0, j - net.reach)
                row = net.row_logits(est._encode(x[:, :, i:i + 1, start:j + 1]), context,
                                     start)
                out[..., i, j] = row[..., 0, -1]
            context = net.next_context(history, est._encode(x[:, :, i:i + 1]))
    return out


@pytest.mark.parametrize("broken", [None, "drawn_row_not_fed", "short_reach"])
def test_the_samplers_row_pass_gives_the_networks_logits(monkeypatch, broken):
    # 9 columns: wider than a pixel's reach in its row (4), so the sampler's window moves
    est = _randomize(_fit((5, 9, 3), 3, n_layers=3, channels=12, first_kernel_size=5))
    assert est.module_.reach == 4
    X = _random_images(5, (5, 9, 3), 3, seed=1)
    if broken == "drawn_row_not_fed":  # the vertical stack fed zeros, not the row drawn
        original = pixelcnn._GatedPixelCNN.next_context
        monkeypatch.setattr(pixelcnn._GatedPixelCNN, "next_context", lambda self, hist, u:
                            original(self, hist, torch.zeros_like(u)))
    elif broken == "short_reach":        # a window one column too narrow
        monkeypatch.setattr(pixelcnn._GatedPixelCNN, "reach", 3)
    with torch.no_grad():
        full = est.module_(est._encode(est._images(torch.as_tensor(X, dtype=torch.float32))))
    close = torch.allclose(_row_by_row(est, X), full, atol=1e-5)
    assert close == (broken is None)


def _check_reproducible(est):
    a, b = est.sample(50, random_state=7), est.sample(50, random_state=7)
    assert np.array_equal(a, b), "the same seed drew different samples"
    assert not np.array_equal(a, est.sample(50, random_state=8))


def _check_law(est, n=4000):
    """The samples' frequencies over all 2x2 images match exp(score_samples)."""
    every = _every(4, int(est.levels))
    p = np.exp(est.score_samples(every))
    X = est.sample(n, random_state=0)
    assert set(np.unique(X)) <= set(range(int(est.levels)))
    counts = np.array([(X == img).all(axis=1).sum() for img in every])
    assert stats.chisquare(counts, n * p / p.sum()).pvalue > 1e-4, "samples off the law"


@pytest.mark.parametrize(("levels", "output"), [(2, {}), (3, MIXTURE)])
def test_sampling_is_seeded_and_follows_the_model(levels, output):
    est = _randomize(_fit((2, 2), levels, **output), seed=3)
    _check_reproducible(est)
    _check_law(est)


@pytest.mark.parametrize(("variant", "check", "levels", "output"), [
    ("own_rng", _check_reproducible, 2, {}), ("greedy", _check_law, 2, {}),
    ("draws_off_by_one", _check_law, 3, MIXTURE)])
def test_sampling_checks_catch_a_broken_sampler(monkeypatch, variant, check, levels,
                                                output):
    est = _randomize(_fit((2, 2), levels, **output), seed=3)
    _break(monkeypatch, variant)
    with pytest.raises(AssertionError):
        check(est)


def test_colour_samples_hold_levels():
    est = _fit((3, 2, 3), 4)
    X = est.sample(5, random_state=0)
    assert X.shape == (5, 18) and set(np.unique(X)) <= {0.0, 1.0, 2.0, 3.0}


# -- learning -----------------------------------------------------------------------------

def _stripes(n, seed):
    """4x4 binary images whose rows all repeat one random row: 4 bits, where independent
    pixels need 16."""
    row = np.random.default_rng(seed).integers(0, 2, size=(n, 1, 4))
    return np.repeat(row, 4, axis=1).reshape(n, 16).astype(np.float64)


def _gain_over_independent_pixels():
    train, val, test = _stripes(512, 0), _stripes(128, 1), _stripes(256, 2)
    est = PixelCNN(levels=2, image_shape=(4, 4), max_epochs=25, lr=1e-2,
                   **TINY).fit(train, val)
    p1 = (train.sum(0) + 0.5) / (len(train) + 1.0)
    independent = np.where(test == 1, np.log(p1), np.log1p(-p1)).sum(1).mean()
    return est.score(test) - independent


def test_learns_structure_that_independent_pixels_miss():
    # independent pixels: about 16 log 2 = 11.1 nats; the law itself: 4 log 2 = 2.8 nats
    assert _gain_over_independent_pixels() > 5.0


def test_learning_check_fails_when_the_rows_above_are_unseen(monkeypatch):
    _break(monkeypatch, "no_vertical")
    assert _gain_over_independent_pixels() < 1.0


# -- settings -----------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "X", "message"), [
    ({"image_shape": None}, np.zeros((4, 4)), "image_shape must be given"),
    ({"image_shape": (2, 3)}, np.zeros((4, 4)), r"holds 6 values but the data have 4"),
    ({"image_shape": (1, 1, 3), "channels": 2}, np.zeros((4, 3)), "channels must be at"),
    ({"image_shape": (2, 2)}, np.full((4, 4), 0.5), "integer pixel levels 0..1"),
    ({"image_shape": (2, 2)}, np.full((4, 4), 2.0), "integer pixel levels 0..1"),
    ({"image_shape": (2, 2), "kernel_size": 4}, np.zeros((4, 4)), "odd int >= 3"),
    ({"image_shape": (2, 0)}, np.zeros((4, 4)), r"\(H, W\) or \(H, W, C\)"),
])
def test_bad_settings_are_refused_by_name(params, X, message):
    with pytest.raises(ValueError, match=f"(?i)pixelcnn: .*{message}"):
        PixelCNN(levels=2, max_epochs=1, **{**TINY, **params}).fit(X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_the_cpu_figures():
    X = _random_images(64, (3, 3), 4)
    cpu = PixelCNN(levels=4, image_shape=(3, 3), max_epochs=2, **TINY).fit(X)
    gpu = PixelCNN(levels=4, image_shape=(3, 3), max_epochs=2, device="cuda", **TINY).fit(X)
    assert next(gpu.module_.parameters()).is_cuda
    np.testing.assert_allclose(gpu.score_samples(X), cpu.score_samples(X), rtol=1e-3)
    assert np.array_equal(gpu.sample(20, random_state=1), gpu.sample(20, random_state=1))


def test_the_cosine_schedule_spans_max_epochs_of_updates():
    """With lr_schedule='cosine' the decay ends with the last update of max_epochs epochs
    (ceil(n / batch_size) updates each): the last update's rate is the schedule's last
    positive value, and the figures stay an exact distribution."""
    X = np.random.default_rng(1).integers(0, 2, size=(50, 4)).astype(float)
    seen = {}
    est = PixelCNN(levels=2, image_shape=(2, 2), n_layers=2, channels=4, max_epochs=3,
                   batch_size=16, lr_schedule="cosine")
    original = est._training_hooks

    def spy(X_val):
        seen["hooks"] = hooks = original(X_val)
        return hooks

    est._training_hooks = spy
    est.fit(X)
    hooks = seen["hooks"]
    assert hooks.cosine_steps == 3 * 4 and hooks.steps == 12
    last = hooks.opt.param_groups[0]["lr"]
    assert last == pytest.approx(est.lr * 0.5 * (1 + np.cos(np.pi * 11 / 12)))
    every = np.array(list(itertools.product((0, 1), repeat=4)), dtype=float)
    assert np.exp(est.score_samples(every)).sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="lr_schedule"):
        PixelCNN(levels=2, image_shape=(2, 2), lr_schedule="linear").fit(X)

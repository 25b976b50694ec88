"""Glow and its layers: inverses invert, every log-determinant equals the autograd
Jacobian's, the density integrates to 1, sampling is seeded, actnorm's data-dependent init.

Each check is a helper that a deliberately broken layer must fail (the ``*_catches_*``
tests), so none of them can pass whatever the code does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densbench.estimators.images.flow_layers import (
    ActNorm,
    AffineCoupling,
    FlowStep,
    InvConv1x1,
    Level,
    MultiScaleFlow,
    SplitPrior,
    squeeze,
    unsqueeze,
)
from densbench.estimators.images.glow import Glow

# -- helpers ------------------------------------------------------------------------


def _jitter(module: torch.nn.Module, seed: int = 0, size: float = 0.1) -> torch.nn.Module:
    """Move every parameter off its initial value (zero-initialised convolutions and
    priors would otherwise hide errors), in float64."""
    module.double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(size * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module.eval()


def _flow(shape: tuple[int, int, int], n_levels: int, seed: int = 0) -> MultiScaleFlow:
    torch.manual_seed(seed)
    flow = MultiScaleFlow(shape, n_levels=n_levels, n_steps=2, hidden=8).double()
    flow.train()
    flow.log_prob(torch.randn(16, *shape, dtype=torch.float64))  # actnorm's init
    return _jitter(flow, seed)


def _jacobian_logdet(fn, x: torch.Tensor) -> float:
    """log|det| of the Jacobian of ``fn`` (one image -> tensors) at the image ``x``."""
    def flat(v: torch.Tensor) -> torch.Tensor:
        out = fn(v.reshape(1, *x.shape[1:]))
        parts = out if isinstance(out, list | tuple) else [out]
        return torch.cat([p.flatten() for p in parts])
    jac = torch.autograd.functional.jacobian(flat, x.flatten())
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    return float(logabs)


def assert_layer_logdet_exact(layer: torch.nn.Module, x: torch.Tensor) -> None:
    """The layer's log-determinant of each image of ``x`` is the autograd Jacobian's."""
    with torch.no_grad():
        logdet = layer(x)[1]
    for i in range(x.shape[0]):
        expected = _jacobian_logdet(lambda v: layer(v)[0], x[i:i + 1])
        assert float(logdet[i]) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def assert_inverts(layer: torch.nn.Module, x: torch.Tensor, tol: float) -> None:
    with torch.no_grad():
        y, _ = layer(x)
        assert float((layer.inverse(y) - x).abs().max()) < tol


def importance_check(flow: MultiScaleFlow, n: int = 40000, sd: float = 3.0
                     ) -> tuple[float, float]:
    """Mean and standard error of p(x)/q(x) over x ~ q = N(0, sd^2 I) (1 if p integrates
    to 1 and q covers it)."""
    gen = torch.Generator().manual_seed(7)
    x = sd * torch.randn((n, *flow.shape), generator=gen, dtype=torch.float64)
    d = x[0].numel()
    log_q = (-0.5 * (x / sd) ** 2).flatten(1).sum(1) - d * (math.log(sd)
                                                           + 0.5 * math.log(2 * math.pi))
    with torch.no_grad():
        ratio = torch.exp(flow.log_prob(x) - log_q)
    return float(ratio.mean()), float(ratio.std() / math.sqrt(n))


def assert_actnorm_init(layer: ActNorm) -> None:
    """After its first training batch, actnorm leaves that batch with zero mean and unit
    variance per channel, and a second batch does not re-initialise it."""
    gen = torch.Generator().manual_seed(3)
    scales = torch.tensor([0.5, 3.0, 10.0]).reshape(1, 3, 1, 1)
    shifts = torch.tensor([-4.0, 1.0, 7.0]).reshape(1, 3, 1, 1)
    x = torch.randn((32, 3, 5, 5), generator=gen, dtype=torch.float64) * scales + shifts
    layer.double().train()
    y, _ = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64),
                               atol=1e-10, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False),
                               torch.ones(3, dtype=torch.float64), atol=1e-10, rtol=0)
    before = [p.detach().clone() for p in layer.parameters()]
    layer(3.0 * x + 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))


# -- deliberately broken layers -----------------------------------------------------


class _ConvLogdetPerPixel(InvConv1x1):
    """Drops the H*W factor of the 1x1 convolution's log-determinant."""

    def forward(self, x):
        y, logdet = super().forward(x)
        return y, logdet / (x.shape[2] * x.shape[3])


class _ConvLogdetSigned(InvConv1x1):
    """Takes log(sign * s) as log|s| (drops the signs, wrong wherever a sign is -1)."""

    def forward(self, x):
        y, logdet = super().forward(x)
        wrong = torch.log(torch.abs(self.sign_s * torch.exp(self.log_s) - 1.0)).sum()
        return y, logdet * 0 + wrong * x.shape[2] * x.shape[3]


class _CouplingNoShiftInLogdet(AffineCoupling):
    """Counts the scale of only the first channel of the changed half."""

    def forward(self, x):
        y, _ = super().forward(x)
        _, log_scale = self._shift_logscale(x[:, :self.c_a])
        return y, log_scale[:, :1].flatten(1).sum(1)


class _ActNormLogdetPerPixel(ActNorm):
    def forward(self, x):
        y, logdet = super().forward(x)
        return y, logdet / (x.shape[2] * x.shape[3])


class _ActNormWholeBatchInit(ActNorm):
    """Initialises from the mean and standard deviation of all channels together."""

    @torch.no_grad()
    def initialize(self, x):
        self.bias.fill_(-float(x.mean()))
        self.logs.fill_(-math.log(float(x.std())))
        self.initialized.fill_(True)


def _image(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((2, *shape), generator=gen, dtype=torch.float64)


def _layers(conv=InvConv1x1, coupling=AffineCoupling, actnorm=ActNorm):
    torch.manual_seed(0)
    return {"actnorm": _jitter(actnorm(4), 1), "conv1x1": _jitter(conv(4), 2),
            "coupling": _jitter(coupling(4, 8), 3), "coupling_odd": _jitter(coupling(3, 8), 4)}


# -- tests: layers ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["actnorm", "conv1x1", "coupling", "coupling_odd"])
def test_each_layer_logdet_equals_autograd_jacobian(name):
    layer = _layers()[name]
    x = _image((layer.c_a * 2 + 1 if name == "coupling_odd" else 4, 3, 2))
    assert_layer_logdet_exact(layer, x)
    assert_inverts(layer, x, 1e-12)


def test_flow_step_and_levels_logdet_equal_autograd_jacobian():
    torch.manual_seed(0)
    step = _jitter(FlowStep(4, 8))
    assert_layer_logdet_exact(step, _image((4, 2, 3)))
    for squeezes, shape in ((True, (1, 4, 4)), (False, (2, 3, 3))):
        level = _jitter(Level(squeezes, shape[0] * (4 if squeezes else 1), 2, 8, last=True))
        assert_layer_logdet_exact(level, _image(shape))
        assert_inverts(level, _image(shape), 1e-12)


def test_squeeze_is_a_permutation_inverted_by_unsqueeze():
    x = _image((3, 4, 6))
    assert squeeze(x).shape == (2, 12, 2, 3)
    assert torch.equal(unsqueeze(squeeze(x)), x)
    assert torch.equal(torch.sort(squeeze(x).flatten(1)).values, torch.sort(x.flatten(1)).values)
    # a 2x2 block's four pixels go to four channels at one position
    assert torch.equal(squeeze(x)[0, :4, 0, 0], x[0, 0, :2, :2].flatten())


@pytest.mark.parametrize("broken", [
    {"conv": _ConvLogdetPerPixel}, {"conv": _ConvLogdetSigned},
    {"coupling": _CouplingNoShiftInLogdet}, {"actnorm": _ActNormLogdetPerPixel}])
def test_logdet_check_catches_broken_layers(broken):
    name = {"conv": "conv1x1", "coupling": "coupling", "actnorm": "actnorm"}[next(iter(broken))]
    layer = _layers(**broken)[name]
    if isinstance(layer, _ConvLogdetSigned):
        assert (layer.sign_s < 0).any()  # otherwise the variant would be right
    with pytest.raises(AssertionError):
        assert_layer_logdet_exact(layer, _image((4, 3, 2)))


class _CouplingSigmoidScale(AffineCoupling):
    """Glow's code's scale, sigmoid(h + 2): bounded above, not below."""

    def _shift_logscale(self, x_a):
        h = self.net(x_a)
        return h[:, 0::2], torch.nn.functional.logsigmoid(h[:, 1::2] + 2.0)


def assert_coupling_scale_bounded(cls: type[AffineCoupling]) -> None:
    """Whatever its net outputs, a coupling's inverse expands by at most exp(bound) per
    value: sampling cannot overflow through a chain of couplings."""
    layer = _jitter(cls(4, 8), seed=5, size=30.0)
    y = _image((4, 3, 3))
    with torch.no_grad():
        _, log_scale = layer._shift_logscale(y[:, :2])
        assert float(log_scale.abs().max()) <= AffineCoupling.max_log_scale
        assert torch.isfinite(layer.inverse(y)).all()


def test_coupling_log_scale_is_bounded_both_ways():
    assert_coupling_scale_bounded(AffineCoupling)
    with pytest.raises(AssertionError):
        assert_coupling_scale_bounded(_CouplingSigmoidScale)


class _CouplingInverseNoShift(AffineCoupling):
    """Undoes the scale but not the shift."""

    def inverse(self, y):
        y_a, y_b = y[:, :self.c_a], y[:, self.c_a:]
        _, log_scale = self._shift_logscale(y_a)
        return torch.cat([y_a, y_b * torch.exp(-log_scale)], 1)


def test_inverse_check_catches_a_broken_inverse():
    layer = _layers(coupling=_CouplingInverseNoShift)["coupling"]
    with pytest.raises(AssertionError):
        assert_inverts(layer, _image((4, 3, 2)), 1e-6)


def test_actnorm_data_dependent_init_gives_zero_mean_unit_variance_per_channel():
    assert_actnorm_init(ActNorm(3))
    with pytest.raises(AssertionError):
        assert_actnorm_init(_ActNormWholeBatchInit(3))


# -- tests: the whole flow ----------------------------------------------------------


@pytest.mark.parametrize(("shape", "n_levels"), [((1, 4, 4), 2), ((3, 6, 6), 2),
                                                 ((2, 3, 3), 1), ((1, 8, 4), 3)])
def test_flow_inverts_and_its_density_is_the_jacobians(shape, n_levels):
    flow = _flow(shape, n_levels)
    x = _image(shape)
    with torch.no_grad():
        latents, logdet, _ = flow.encode(x)
        log_p = flow.log_prob(x)
        assert sum(z[0].numel() for z in latents) == x[0].numel()
        assert float((flow.decode(latents) - x).abs().max()) < 1e-10
        assert float((flow.from_noise(flow.to_noise(x)) - x).abs().max()) < 1e-10
    # log|det| of the flow, and the density through the standardized noise
    for i in range(2):
        assert float(logdet[i]) == pytest.approx(
            _jacobian_logdet(lambda v: flow.encode(v)[0], x[i:i + 1]), abs=1e-8)
        eps = torch.cat([e[i].detach().flatten() for e in flow.to_noise(x)])
        by_autograd = (-0.5 * (eps ** 2 + math.log(2 * math.pi))).sum() \
            + _jacobian_logdet(flow.to_noise, x[i:i + 1])
        assert float(log_p[i]) == pytest.approx(float(by_autograd), abs=1e-8)


def test_density_integrates_to_one_and_the_check_sees_a_wrong_logdet():
    flow = _flow((1, 2, 2), 1)  # one squeeze: 4x1x1
    mean, se = importance_check(flow)
    assert abs(mean - 1.0) < 3 * se, (mean, se)
    assert se < 0.05
    # the same flow with its actnorm's log-det left out is off by far more than 3 SE
    broken = _flow((1, 2, 2), 1)
    for step in broken.levels[0].steps.layers:
        step.layers[0].forward = lambda x, layer=step.layers[0]: (
            ActNorm.forward(layer, x)[0], x.new_zeros(x.shape[0]))
    mean_b, se_b = importance_check(broken)
    assert abs(mean_b - 1.0) > 3 * se_b, (mean_b, se_b)


def test_split_prior_starts_standard_normal():
    prior = SplitPrior(5)
    mean, logs = prior.params(torch.randn(2, prior.c_keep, 3, 3))
    assert mean.shape == (2, 2, 3, 3) and not mean.any() and not logs.any()


# -- tests: the estimator ----------------------------------------------------------


def _digits(n: int = 200, seed: int = 0) -> np.ndarray:
    """Logit-space stand-ins for 4x4 images: smooth blobs plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:4, :4]
    centre = rng.uniform(0, 3, size=(n, 2))
    blob = np.exp(-((yy[None] - centre[:, :1, None]) ** 2
                    + (xx[None] - centre[:, 1:, None]) ** 2) / 2.0)
    return (6 * blob - 3 + 0.3 * rng.normal(size=blob.shape)).reshape(n, 16)


def _fitted(**kw) -> Glow:
    params = {**Glow.test_params(), "max_epochs": 4, **kw}
    return Glow(**params).fit(_digits(), _digits(60, seed=1))


def test_trained_glow_inverts_in_float32_and_is_seeded():
    est = _fitted(n_levels=2)
    assert all(bool(m.initialized) for m in est.module_.modules() if isinstance(m, ActNorm))
    rows = torch.as_tensor((_digits(20, 2) - est.shift_) / est.scale_, dtype=torch.float32)
    x = est._images(rows)
    with torch.no_grad():
        latents, _, _ = est.module_.encode(x)
        assert float((est.module_.decode(latents) - x).abs().max()) < 1e-4
    a = assert_seeded_sampling(est)
    assert np.isfinite(est.score_samples(a)).all()
    assert est.sample(0).shape == (0, 16)
    # the same seed trains the same model
    assert np.array_equal(est.score_samples(a), _fitted(n_levels=2).score_samples(a))


def assert_seeded_sampling(est: Glow) -> np.ndarray:
    """The same random_state draws the same samples, another draws others."""
    a, b = est.sample(8, random_state=5), est.sample(8, random_state=5)
    assert np.array_equal(a, b) and not np.array_equal(a, est.sample(8, random_state=6))
    return a


class _UnseededGlow(Glow):
    """Draws its latents from a generator seeded afresh, not from random_state."""

    def _sample_standardized(self, n, generator):
        return super()._sample_standardized(n, torch.Generator().manual_seed(
            torch.seed() % 2**63))


def test_seeded_sampling_check_catches_an_unseeded_sampler():
    est = _fitted()
    est.__class__ = _UnseededGlow
    with pytest.raises(AssertionError):
        assert_seeded_sampling(est)


def test_score_is_the_flow_density_plus_the_standardization():
    est = _fitted()
    X = _digits(5, 3)
    rows = torch.as_tensor((X - est.shift_) / est.scale_, dtype=torch.float32)
    with torch.no_grad():
        flow = est.module_.log_prob(est._images(rows)).double().numpy()
    np.testing.assert_allclose(est.score_samples(X), flow - np.log(est.scale_).sum(),
                               rtol=1e-12)


@pytest.mark.parametrize(("kw", "message"), [
    ({"image_shape": (4, 5)}, "image_shape (4, 5) has 20 pixels but X has 16 features"),
    ({"image_shape": None}, "image_shape is needed"),
    ({"image_shape": (4, 4, 0)}, "image_shape must be"),
    ({"n_steps": 0}, "n_steps must be"),
])
def test_bad_settings_are_refused_naming_them(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Glow(**{**Glow.test_params(), **kw}).fit(_digits(20))


def test_an_odd_one_channel_image_is_refused():
    expected = r"^\w+: image_shape \(3, 3\): level 1 .*odd height or width cannot be squeezed"
    with pytest.raises(ValueError, match=expected):
        Glow(**{**Glow.test_params(), "image_shape": (3, 3)}).fit(
            np.zeros((10, 9)) + np.arange(9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_glow_runs_on_cuda():
    est = _fitted(device="cuda")
    assert next(est.module_.parameters()).is_cuda
    assert np.isfinite(est.score_samples(_digits(5))).all()
    assert est.sample(3, random_state=0).shape == (3, 16)

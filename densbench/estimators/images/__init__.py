"""Image density models: estimators that read each row as an image (``image_model``).

The run hands such a class the dataset's ``image_shape`` ((H, W) or (H, W, C); rows hold
the pixels channels last, :func:`densbench.data.base.channels_first` gives the (C, H, W)
that convolutions want). The families of the field, one module each:

- ``pixelcnn``: a gated PixelCNN (van den Oord et al. 2016) with masked convolutions, an
  exact discrete likelihood over the levels (``discrete_native``: it sees the raw levels);
- ``glow``: a multi-scale flow of squeeze, actnorm, invertible 1x1 convolutions and
  affine couplings (Kingma & Dhariwal 2018; Dinh et al. 2017), on dequantized pixels in
  logit space (``logit_space``: the run applies the logit transform and adds its
  log-Jacobian back, :func:`densbench.data.transforms.prepare`);
- the convolutional networks of the VAE (``densbench.estimators.vae``), a bound on the
  discrete log-probability.

Each is registered in :mod:`densbench.estimators` like any estimator, and the public
conformance checks (:mod:`densbench.testing`) fit it to tiny images (the shape and levels
of its ``test_params()``) and check that a discrete one's probabilities sum to 1 over
every 2x2 image. The MLP families (made, maf, realnvp) see images as flat rows.
"""

__all__: list[str] = []

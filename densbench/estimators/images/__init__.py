"""Image density models: estimators that read each row as an image (``image_model``)."""

__all__: list[str] = []

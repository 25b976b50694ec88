"""Where estimators that take a device run: the one check of a device's name and the
one default, shared by the runner (``--device``) and the estimators' ``device`` parameter.

The check is of the name only (it imports nothing): whether CUDA is there is asked where
a device is used (:func:`densbench.runner.supervise.local_devices`,
:func:`densbench.estimators.training.resolve_device`).
"""

from __future__ import annotations

__all__ = ["DEFAULT_DEVICE", "check_device"]

#: The device of a run and of an estimator when none is named.
DEFAULT_DEVICE = "cpu"


def check_device(device: object, *, auto: bool = False) -> str:
    """``device`` if it is ``cpu``, ``cuda`` or ``cuda:N`` (or ``auto``, where ``auto`` is
    true: an estimator may pick CUDA when it is there), else a ValueError naming it.

    Example:
        >>> check_device("cuda:1")
        'cuda:1'
        >>> check_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: device must be cpu, cuda or cuda:N; got 'gpu'
    """
    if isinstance(device, str):
        kind, colon, index = device.partition(":")
        if device in ("cpu", "cuda") or (kind == "cuda" and colon and index.isdigit()):
            return device
        if auto and device == "auto":
            return device
    names = "cpu, cuda, cuda:N or auto" if auto else "cpu, cuda or cuda:N"
    raise ValueError(f"device must be {names}; got {device!r}")

"""Argument checks of the Python API: one rule and one message for each kind of size.

Every public constructor and function checks its sizes and scalar settings here, so `Encoder(latent_size=0)`,
`MixturePrior(2, 3.5)`, `MixturePrior(2, 3, min_scale=0.0)` and `evaluate(..., k=0)` fail the same way, naming
the argument. A size is an int or a NumPy integer; bools and floats (3.0 too) are refused. A number (a scale, a
standard deviation, a time) is any finite real, ints and NumPy scalars too; bools, NaN and infinities are
refused. Configs have checks of their own (`config.ConfigError`, fields named `section.name`), stricter: plain
ints only, as a config is written to JSON.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


def is_positive_int(value: Any) -> bool:
    """True for an int or NumPy integer >= 1; False for bools, floats and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def positive_int(value: Any, name: str) -> int:
    """`value` as an int; a ValueError naming `name` unless `is_positive_int(value)`."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def positive_ints(values: Iterable[Any], name: str) -> tuple[int, ...]:
    """`values` (a sequence of any length, empty too) as ints; a ValueError naming `name` unless it is a
    sequence and each entry a positive integer."""
    try:
        sizes = tuple(values)
    except TypeError:
        sizes = (None,)
    if not all(is_positive_int(size) for size in sizes):
        raise ValueError(f"{name} must be positive integers, got {_listed(values)}")
    return tuple(int(size) for size in sizes)


def is_finite_number(value: Any) -> bool:
    """True for a finite int, float or NumPy real scalar; False for bools, NaN, infinities and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_positive_number(value: Any) -> bool:
    """True for a finite real number > 0 (see `is_finite_number`)."""
    return is_finite_number(value) and value > 0


def finite_number(value: Any, name: str) -> float:
    """`value` as a float; a ValueError naming `name` unless `is_finite_number(value)`."""
    if not is_finite_number(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive_number(value: Any, name: str) -> float:
    """`value` as a float; a ValueError naming `name` unless it is a finite number > 0."""
    if not is_positive_number(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def non_negative_number(value: Any, name: str) -> float:
    """`value` as a float; a ValueError naming `name` unless it is a finite number >= 0."""
    if not (is_finite_number(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def image_shape(shape: Any, name: str = "image_shape") -> tuple[int, int, int]:
    """`shape` as (height, width, channels) of positive ints; a ValueError naming `name` otherwise."""
    try:
        sizes = tuple(shape)
    except TypeError:
        sizes = ()
    if len(sizes) != 3 or not all(is_positive_int(size) for size in sizes):
        raise ValueError(f"{name} must be [height, width, channels] of positive integers, got {_listed(shape)}")
    return tuple(int(size) for size in sizes)


def _listed(values: Any) -> str:
    """A list or tuple shown as a list ([6, 0]); anything else as its repr."""
    return repr(list(values)) if isinstance(values, (list, tuple)) else repr(values)

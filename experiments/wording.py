"""Sentences that compare measured numbers: the words (higher, lower, about the same) come from the numbers.

A report never states a fixed conclusion: each comparison is one of these sentences, made from the values the
run measured, with the values in it, so the words flip when the numbers do (tests/test_experiment_wording.py).
"""

from __future__ import annotations

from collections.abc import Sequence


def direction(value: float, reference: float, margin: float = 0.0) -> str:
    """'higher' or 'lower' than `reference`, or 'about the same as' when within `margin` (inclusive)."""
    if abs(value - reference) <= margin:
        return "about the same as"
    return "higher" if value > reference else "lower"


def compare(quantity: str, name: str, value: float, other: str, reference: float, digits: int = 1,
            margin: float = 0.0) -> str:
    """E.g. "The test squared error is 33.9 for the VAE, higher than 31.3 for the autoencoder (+2.6)."

    `margin`: differences up to it are called "about the same" (a noise level, a standard error).
    """
    words = direction(value, reference, margin)
    than = "" if words == "about the same as" else " than"
    return (f"{quantity} is {value:.{digits}f} for {name}, {words}{than} {reference:.{digits}f} for {other} "
            f"({value - reference:+.{digits}f}).")


def trend(values: Sequence[float]) -> str:
    """'rises at every step', 'falls at every step', or 'does not move one way' over an ordered sequence."""
    steps = [b - a for a, b in zip(values, values[1:])]
    if all(step > 0 for step in steps):
        return "rises at every step"
    if all(step < 0 for step in steps):
        return "falls at every step"
    return "does not move one way"


def best(settings: Sequence, values: Sequence[float], lowest: bool = True) -> tuple:
    """(setting, value) of the lowest value (or highest, `lowest=False`)."""
    pairs = list(zip(settings, values))
    return min(pairs, key=lambda pair: pair[1]) if lowest else max(pairs, key=lambda pair: pair[1])

"""One rule for sizes across the Python API: ints and NumPy integers >= 1 pass; 0, -1, bools, floats (2.0 too),
strings and None fail with a ValueError that names the argument and shows the value."""

import re

import numpy as np
import pytest

from tfvae import checks, data, flows, hierarchy, nets, priors

BAD = [0, -1, True, 2.0, 2.5, "2", None]


@pytest.mark.parametrize("good", [1, 7, np.int32(7), np.int64(7)])
def test_positive_int_returns_a_plain_int(good):
    assert checks.positive_int(good, "n") == int(good) and type(checks.positive_int(good, "n")) is int


@pytest.mark.parametrize("bad", BAD)
def test_positive_int_refuses_naming_the_argument(bad):
    with pytest.raises(ValueError, match=f"^n must be a positive integer, got {re.escape(repr(bad))}$"):
        checks.positive_int(bad, "n")


def test_lists_of_sizes_and_image_shapes():
    assert checks.positive_ints([400, np.int64(200)], "hidden_sizes") == (400, 200)
    assert checks.positive_ints((), "conv_channels") == ()
    for bad in ([400, 0], [4.0], (True,), 5):
        with pytest.raises(ValueError, match="^hidden_sizes must be positive integers, got "):
            checks.positive_ints(bad, "hidden_sizes")
    assert checks.image_shape(np.array([28, 28, 1]), "output_shape") == (28, 28, 1)
    for bad in ((28, 28), (28, 0, 1), (28.0, 28, 1), None):
        with pytest.raises(ValueError, match=r"^output_shape must be \[height, width, channels\] of positive integers"):
            checks.image_shape(bad, "output_shape")


# Each public constructor or function with a size argument, and that argument's name.
ENTRY_POINTS = {
    "latent_size": lambda n: nets.Encoder([4], latent_size=n),
    "hidden_sizes": lambda n: nets.Decoder([4, n], output_shape=(2, 2, 1)),
    "num_steps": lambda n: flows.FlowEncoder([4], latent_size=2, num_steps=n),
    "context_size": lambda n: flows.FlowEncoder([4], latent_size=2, num_steps=1, context_size=n),
    "num_components": lambda n: priors.MixturePrior(2, n),
    "num_pseudo_inputs": lambda n: priors.VampPrior(nets.Encoder([4], 2), (2, 2, 1), n),
    "second_size": lambda n: hierarchy.TwoLayerNormal(nets.Encoder([4], 2)(np.zeros([1, 2, 2, 1])), lambda a: a, n),
    "batch_size": lambda n: data.from_arrays(np.zeros((3, 2, 2)), batch_size=n),
    "num_examples": lambda n: data.file_order("mnist", "test", n),
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", [0, 2.0, True])
def test_every_size_argument_of_the_api_follows_the_rule(name, bad):
    message = f"{name} must be positive integers" if name == "hidden_sizes" else f"{name} must be a positive integer"
    with pytest.raises(ValueError, match=f"^{message}"):
        ENTRY_POINTS[name](bad)


# Numbers: any finite real (ints and NumPy scalars too); bools, NaN, infinities, strings and None refused.
BAD_NUMBERS = [True, float("nan"), float("inf"), -float("inf"), "1.0", None]


@pytest.mark.parametrize("good", [0.5, 2, np.float32(0.25), np.int64(3)])
def test_numbers_return_plain_floats(good):
    for check in (checks.finite_number, checks.positive_number, checks.non_negative_number):
        value = check(good, "x")
        assert value == float(good) and type(value) is float


@pytest.mark.parametrize(
    ("check", "bad_values", "message"),
    [
        (checks.finite_number, BAD_NUMBERS, "x must be a finite number, got "),
        (checks.positive_number, [*BAD_NUMBERS, 0, 0.0, -1e-9], "x must be a positive finite number, got "),
        (checks.non_negative_number, [*BAD_NUMBERS, -1e-9, -1], "x must be a non-negative finite number, got "),
    ],
)
def test_numbers_refuse_naming_the_argument(check, bad_values, message):
    for bad in bad_values:
        with pytest.raises(ValueError, match=f"^{re.escape(message + repr(bad))}$"):
            check(bad, "x")


def test_zero_is_non_negative():
    assert checks.non_negative_number(0, "x") == 0.0 and checks.finite_number(-2.5, "x") == -2.5


# Each public constructor with a scale-like number argument, and its name and rule.
NUMBER_ENTRY_POINTS = {
    "min_scale": (lambda v: nets.Encoder([4], latent_size=2, min_scale=v), "a positive finite number"),
    "flow min_scale": (lambda v: flows.FlowEncoder([4], latent_size=2, num_steps=1, min_scale=v),
                       "a positive finite number"),
    "mixture min_scale": (lambda v: priors.MixturePrior(2, 3, min_scale=v), "a positive finite number"),
    "init_loc_stddev": (lambda v: priors.MixturePrior(2, 3, init_loc_stddev=v), "a non-negative finite number"),
    "init_stddev": (lambda v: priors.VampPrior(nets.Encoder([4], 2), (2, 2, 1), 3, init_stddev=v),
                    "a non-negative finite number"),
    "init_mean": (lambda v: priors.VampPrior(nets.Encoder([4], 2), (2, 2, 1), 3, init_mean=v), "a finite number"),
}


@pytest.mark.parametrize("entry", list(NUMBER_ENTRY_POINTS))
@pytest.mark.parametrize("bad", [float("nan"), True, -1.0])
def test_every_number_argument_of_the_api_follows_the_rule(entry, bad):
    build, rule = NUMBER_ENTRY_POINTS[entry]
    if bad == -1.0 and rule == "a finite number":
        build(bad)  # -1 is a fine mean
        return
    name = entry.split()[-1]
    with pytest.raises(ValueError, match=f"^{name} must be {rule}, got {re.escape(repr(bad))}$"):
        build(bad)

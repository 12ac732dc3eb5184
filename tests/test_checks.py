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

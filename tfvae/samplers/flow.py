"""A masked autoregressive flow over the codes (Papamakarios et al., 2017), from `tfp.bijectors`."""

from __future__ import annotations

from collections.abc import Sequence

import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, flows
from tfvae.samplers.base import Standardised, check_temperature

tfb = tfp.bijectors
tfd = tfp.distributions


class _MaskedNetwork(snt.Module):
    """MADE (Germain et al., 2015): x [b, d] -> (shift, log_scale), each [b, d], entry i a function of x_<i.

    `flows.made_masks` gives the masks, applied in the forward pass (so no update breaks the autoregressive
    property); ReLU between layers; the output layer starts at zero (the step starts as the identity). The
    log-scale is bounded to (-3, 3) by 3 tanh(. / 3), so no step can blow a standardised code up by more than
    e^3 while it trains.
    """

    def __init__(self, size: int, hidden_sizes: Sequence[int], init: snt.initializers.Initializer, name: str):
        super().__init__(name=name)
        masks = flows.made_masks(size, hidden_sizes, params=2)
        self._masks = [tf.constant(mask) for mask in masks]
        self.kernels = [tf.Variable(init(mask.shape, tf.float32) if index < len(masks) - 1 else tf.zeros(mask.shape),
                                    name=f"w_{index}") for index, mask in enumerate(masks)]
        self.biases = [tf.Variable(tf.zeros(mask.shape[1]), name=f"b_{index}") for index, mask in enumerate(masks)]

    def __call__(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        h = x
        for index, (kernel, bias, mask) in enumerate(zip(self.kernels, self.biases, self._masks)):
            h = tf.matmul(h, kernel * mask) + bias
            h = tf.nn.relu(h) if index < len(self.kernels) - 1 else h
        pairs = tf.reshape(h, tf.concat([tf.shape(h)[:-1], [-1, 2]], 0))  # output (i, p) at i * 2 + p
        return pairs[..., 0], 3.0 * tf.tanh(pairs[..., 1] / 3.0)


class FlowSampler(Standardised):
    """A masked autoregressive flow over the codes (Papamakarios et al., 2017), trained by maximum likelihood.

        s ~ N(0, T^2 I),   s -> MAF_1 -> reverse -> ... -> MAF_K = standardised code,   z = shift + scale * that

    Each step is `tfb.MaskedAutoregressiveFlow` with a `_MaskedNetwork` (hidden_sizes, ReLU); the dimensions'
    order is reversed between steps (`tfb.Permute`). log p(z) is one pass of the networks; a draw inverts each
    step, latent_size sequential passes.
    """

    kind = "flow"

    def __init__(self, latent_size: int, num_steps: int = 4, hidden_sizes: Sequence[int] = (128, 128), *,
                 steps: int = 4000, batch_size: int = 256, learning_rate: float = 1e-3, seed: int = 0,
                 name: str = "flow_sampler"):
        super().__init__(latent_size, seed, name, steps, batch_size, learning_rate)
        self.num_steps = checks.positive_int(num_steps, "num_steps")
        self.hidden_sizes = checks.positive_ints(hidden_sizes, "hidden_sizes")
        self.networks = [_MaskedNetwork(self.latent_size, self.hidden_sizes, self._init, name=f"made_{k}")
                         for k in range(self.num_steps)]

    def options(self) -> dict:
        return {"num_steps": self.num_steps, "hidden_sizes": list(self.hidden_sizes), **super().options()}

    def bijector(self, standardised: bool = False) -> tfb.Bijector:
        """The flow from its base N(0, I) to codes z (to standardised codes with `standardised`)."""
        reverse = list(range(self.latent_size))[::-1]
        steps = []  # in the order they apply to a base draw
        for k, network in enumerate(self.networks):
            if k > 0:
                steps.append(tfb.Permute(permutation=reverse))
            steps.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=network, name=f"maf_{k}"))
        if not standardised:
            steps += [tfb.Scale(self.scale), tfb.Shift(self.shift)]
        return tfb.Chain(steps[::-1])

    def distribution(self, temperature=1.0, standardised: bool = False) -> tfd.Distribution:
        """The flow's density over z (event [latent]), its base N(0, T^2 I)."""
        if not tf.is_tensor(temperature):
            check_temperature(temperature)
        base = tfd.Independent(tfd.Normal(tf.zeros([self.latent_size]), tf.ones([self.latent_size]) * temperature), 1)
        return tfd.TransformedDistribution(base, self.bijector(standardised))

    def _loss(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        del seed  # maximum likelihood draws nothing
        return -tf.reduce_mean(self.distribution(standardised=True).log_prob(batch))

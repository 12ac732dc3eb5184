"""Flow posteriors: a diagonal Normal pushed through invertible maps conditioned on the image.

    eps ~ q0(eps|x) = N(mu(x), diag sigma(x)^2)       (what `nets.Encoder` returns)
    z   = f_K o ... o f_1(eps; h(x))                   (K steps, each conditioned on a context vector h(x))
    log q(z|x) = log q0(eps|x) - sum_k log |det d f_k / d input|

`FlowEncoder` returns q(z|x) as an ordinary `tfd.TransformedDistribution`
(batch [b], event [latent_size]) whose `sample(shape, seed=...)` and
`log_prob(z)` take no extra arguments: the context h(x) is bound inside each
step's shift-and-log-scale function and broadcast over any leading sample
axes of its input, so z of shape [n, b, latent] works. The posterior is not
factorised, so the rate is the Monte Carlo log q(z|x) - log p(z) at the drawn
z (`objectives.kl_divergence` falls back to it; `objectives.is_factorised`
says False).

Flows (`FLOWS`):

- "iaf": inverse autoregressive flow (Kingma et al., 2016). Each step is
  `tfb.Invert(tfb.MaskedAutoregressiveFlow(...))`: z_i = (eps_i - shift_i) *
  exp(-log_scale_i) with (shift_i, log_scale_i) a function of eps_<i and h,
  so a draw is one pass of the network, and log q at a drawn z reads the
  log-determinant from TFP's bijector cache (the forward pass that made z).
  Scoring any other z inverts the step, latent_size sequential passes (a
  `tf.while_loop`). The order of the latent dimensions is reversed
  (`tfb.Permute`) between steps, and back at the end.
- "coupling": affine coupling (RealNVP, Dinh et al., 2017), `tfb.RealNVP`:
  the first latent_size // 2 dimensions pass through and shift and scale the
  rest; reversed between steps. One pass either way; needs latent_size >= 2.
  (TFP has no planar flow bijector; coupling is the simpler flow it supports.)

The networks inside the steps (`ConditionalMADE`) are Sonnet modules whose
autoregressive masks are applied in the forward pass. `tfb.AutoregressiveNetwork`
(a tf-keras layer) masks its kernels only through the initializer and a
Keras kernel constraint, which Keras optimizers apply after each update and
Sonnet optimizers (tfvae's) do not: after one `snt.optimizers.Adam` step its
Jacobian is no longer triangular and TFP's log-determinant (the sum of the
log-scales) is wrong.

Every step starts as the identity (its output layer is zero), so a new
FlowEncoder's q(z|x) is its base Normal. The flow networks compute in
float32 whatever `precision.compute` says: the torso and heads follow the
compute dtype like `nets.Encoder`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, nets, precision

tfb = tfp.bijectors
tfd = tfp.distributions

FLOWS = ("iaf", "coupling")


# --------------------------------------------------------------------------- networks inside the steps
def made_masks(event_size: int, hidden_units: Sequence[int], params: int) -> list[np.ndarray]:
    """The masks of a dense MADE (Germain et al., 2015) over inputs ordered 1..event_size, left to right.

    Returns one [fan_in, fan_out] 0/1 array per layer. Output unit (i, p)
    (flattened as i * params + p) sees only inputs 1..i-1, so output i is a
    function of x_<i. Hidden units get degrees 1..event_size-1 in turn; with
    event_size = 1 they get degree 0 (they see no input, only the context).
    """
    inputs = np.arange(1, event_size + 1)
    degrees = [inputs]
    for units in hidden_units:
        if event_size == 1:
            degrees.append(np.zeros(units, dtype=int))
        else:
            degrees.append(np.arange(units) % (event_size - 1) + 1)
    masks = [(fan_in[:, None] <= fan_out[None, :]) for fan_in, fan_out in zip(degrees[:-1], degrees[1:])]
    masks.append(degrees[-1][:, None] < np.repeat(inputs, params)[None, :])
    return [mask.astype(np.float32) for mask in masks]


class ConditionalMADE(snt.Module):
    """x [..., input_size] and a context [..., context_size] -> [..., output_size], optionally masked.

    Each layer computes x_k @ (W_k * M_k) + b_k + context @ V_k (an
    activation between layers), so the context enters every layer (TFP's
    `conditional_input_layers="all_layers"`). The masks M_k (`made_masks`)
    are applied in the forward pass, so no update of W_k can break the
    autoregressive property; without masks this is a plain conditional MLP
    (the coupling steps' network). The leading axes of x and of the context
    broadcast: x [n, b, d] with a context [b, c] gives [n, b, output_size].
    The output layer starts at zero (weights, bias and context weights).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_units: Sequence[int],
        context_size: int,
        activation: Callable[[tf.Tensor], tf.Tensor] = tf.nn.relu,
        masks: Sequence[np.ndarray] | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        sizes = [input_size, *hidden_units, output_size]
        self.output_size, self._activation = output_size, activation
        self.kernels, self.biases, self.context_kernels = [], [], []
        self._masks = None if masks is None else [tf.constant(mask) for mask in masks]
        with self.name_scope:
            for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                last = index == len(sizes) - 2
                init = snt.initializers.Zeros() if last else nets._weight_init()
                kernel = init([fan_in, fan_out], tf.float32)
                if self._masks is not None:
                    kernel *= self._masks[index]
                self.kernels.append(tf.Variable(kernel, name=f"w_{index}"))
                self.biases.append(tf.Variable(tf.zeros([fan_out]), name=f"b_{index}"))
                self.context_kernels.append(tf.Variable(init([context_size, fan_out], tf.float32), name=f"v_{index}"))

    @tf.autograph.experimental.do_not_convert  # plain Python control flow: tracing it as is is faster
    def __call__(self, x: tf.Tensor, context: tf.Tensor) -> tf.Tensor:
        leading = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(context)[:-1])
        outputs = tf.reshape(tf.broadcast_to(x, tf.concat([leading, tf.shape(x)[-1:]], 0)), [-1, x.shape[-1]])
        context = tf.reshape(
            tf.broadcast_to(context, tf.concat([leading, tf.shape(context)[-1:]], 0)), [-1, context.shape[-1]]
        )
        for index, (kernel, bias, context_kernel) in enumerate(zip(self.kernels, self.biases, self.context_kernels)):
            if self._masks is not None:
                kernel = kernel * self._masks[index]
            outputs = tf.matmul(outputs, kernel) + bias + tf.matmul(context, context_kernel)
            if index < len(self.kernels) - 1:
                outputs = self._activation(outputs)
        return tf.reshape(outputs, tf.concat([leading, [self.output_size]], 0))


def _shift_and_log_scale(outputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Network outputs [..., 2 * n] laid out as [..., n, 2] -> shift [..., n], log_scale [..., n]."""
    pairs = tf.reshape(outputs, tf.concat([tf.shape(outputs)[:-1], [outputs.shape[-1] // 2, 2]], 0))
    shift, log_scale = tf.unstack(pairs, num=2, axis=-1)
    return shift, log_scale


def _iaf_step(network: ConditionalMADE, context: tf.Tensor, name: str) -> tfb.Bijector:
    @tf.autograph.experimental.do_not_convert
    def shift_and_log_scale_fn(y):
        return _shift_and_log_scale(network(y, context))

    return tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale_fn), name=name)


def _coupling_step(network: ConditionalMADE, context: tf.Tensor, num_masked: int, name: str) -> tfb.Bijector:
    @tf.autograph.experimental.do_not_convert
    def shift_and_log_scale_fn(x0, output_units):
        del output_units  # the network was built for them
        return _shift_and_log_scale(network(x0, context))

    return tfb.RealNVP(num_masked=num_masked, shift_and_log_scale_fn=shift_and_log_scale_fn, name=name)


# --------------------------------------------------------------------------- the encoder
class FlowEncoder(snt.Module):
    """q(z|x): a diagonal Normal from an MLP (or conv) torso, pushed through `num_steps` flow steps.

    The torso, the mean/log-variance head and `min_scale` are `nets.Encoder`'s
    (with `conv_channels`, `nets.ConvEncoder`'s); a second head on the torso,
    activation(linear), gives the context h(x) [b, context_size] that every
    step's network reads.

    Args:
      hidden_sizes: the torso's MLP widths.
      latent_size: dimensions of z.
      num_steps: flow steps K, >= 1.
      flow: one of `FLOWS` ("iaf" or "coupling").
      context_size: width of h(x).
      flow_hidden_units: hidden widths of each step's network (a MADE for
        "iaf", an MLP for "coupling"); () is allowed (one masked linear map).
      activation: the torso's and the step networks' activation (`nets.ACTIVATIONS`).
      min_scale: floor on the base Normal's standard deviation.
      conv_channels: stride-2 convolutions before the MLP, as `nets.ConvEncoder`;
        () for the MLP encoder.

    Raises:
      ValueError: naming the field, for num_steps < 1, an unknown flow, a
        coupling flow with latent_size < 2, sizes that are not positive, or an
        unknown activation.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int],
        latent_size: int,
        num_steps: int,
        flow: str = "iaf",
        context_size: int = 32,
        flow_hidden_units: Sequence[int] = (64,),
        activation: str = "relu",
        min_scale: float = 1e-4,
        conv_channels: Sequence[int] = (),
        name: str = "flow_encoder",
    ):
        super().__init__(name=name)
        checks.positive_int(num_steps, "num_steps")
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {', '.join(map(repr, FLOWS))}; got {flow!r}")
        checks.positive_int(latent_size, "latent_size")
        if flow == "coupling" and latent_size < 2:
            raise ValueError(
                f"latent_size must be >= 2 for flow='coupling' (a step transforms one half given the other), "
                f"got {latent_size}"
            )
        checks.positive_int(context_size, "context_size")
        checks.positive_ints(hidden_sizes, "hidden_sizes")
        checks.positive_ints(flow_hidden_units, "flow_hidden_units")
        checks.positive_ints(conv_channels, "conv_channels")
        act = nets.activation_fn(activation)

        self.latent_size, self.num_steps, self.flow = int(latent_size), int(num_steps), flow
        self._min_scale = min_scale
        self._head = nets._posterior_head(self.latent_size, min_scale, deterministic=False)
        self._context = snt.Linear(context_size, w_init=nets._weight_init(), name="context")
        self._context_activation = act
        layers = []
        for index, size in enumerate(conv_channels):
            conv = snt.Conv2D(size, nets._KERNEL_SIZE, stride=2, w_init=nets._weight_init(), name=f"conv_{index}")
            layers += [conv, act]
        mlp = snt.nets.MLP(list(hidden_sizes), w_init=nets._weight_init(), activation=act, activate_final=True)
        self._torso = snt.Sequential([*layers, snt.Flatten(), mlp])

        d = self.latent_size
        if flow == "iaf":
            masks = made_masks(d, flow_hidden_units, params=2)
            self._num_masked = None
            self.step_networks = [
                ConditionalMADE(d, 2 * d, flow_hidden_units, context_size, act, masks, name=f"made_{k}")
                for k in range(num_steps)
            ]
        else:
            self._num_masked = d // 2
            self.step_networks = [
                ConditionalMADE(self._num_masked, 2 * (d - self._num_masked), flow_hidden_units, context_size, act,
                                name=f"coupling_{k}")
                for k in range(num_steps)
            ]

    def context(self, features: tf.Tensor) -> tf.Tensor:
        """The context h(x) [b, context_size] from the torso's features [b, hidden]."""
        return self._context_activation(precision.run(features, self._context))

    def bijector(self, context: tf.Tensor) -> tfb.Bijector:
        """The K steps (and the reversals between them) conditioned on `context` [b, context_size], one `tfb.Chain`.

        Its forward maps base draws eps [..., b, latent] to z; the context
        broadcasts over the leading axes. The reversals between steps add up to
        no permutation (one more at the end when K is even), so at the identity
        start z = eps and the base Normal's i-th mean is z_i's.
        """
        reverse = list(range(self.latent_size))[::-1]
        steps = []  # in the order they apply
        for k, network in enumerate(self.step_networks):
            if k > 0:
                steps.append(tfb.Permute(permutation=reverse, name=f"reverse_{k}"))
            if self.flow == "iaf":
                steps.append(_iaf_step(network, context, name=f"iaf_{k}"))
            else:
                steps.append(_coupling_step(network, context, self._num_masked, name=f"coupling_{k}"))
        if self.num_steps % 2 == 0:  # an odd number of reversals so far: undo it, so z_i stays eps_i's coordinate
            steps.append(tfb.Permute(permutation=reverse, name="reverse_last"))
        return tfb.Chain(steps[::-1], name=f"{self.flow}_flow")

    def __call__(self, images: tf.Tensor) -> tfd.Distribution:
        """images: [batch, H, W, C] in [0, 1] -> q(z|x), batch [batch], event [latent_size].

        A `tfd.TransformedDistribution` whose `distribution` is the base
        Normal (`nets.Encoder`'s) and whose `bijector` is `self.bijector(h(x))`.
        """
        features = precision.run(images, self._torso)
        base = nets._posterior(precision.run(features, self._head), self._min_scale, deterministic=False)
        return tfd.TransformedDistribution(base, self.bijector(self.context(features)), name="flow_posterior")



def flow_parts(config, image_shape: Sequence[int], parts: dict) -> dict:
    """The flow posteriors' family builder (`tfvae.families`): a `FlowEncoder` in place of the encoder."""
    encoder = FlowEncoder(
        config.hidden_sizes, config.latent_size, config.flow_steps, config.posterior,
        activation=config.activation, min_scale=config.min_scale,
        conv_channels=config.conv_channels if config.architecture == "conv" else (),
    )
    return {**parts, "encoder": encoder}


__all__ = ["FLOWS", "ConditionalMADE", "FlowEncoder", "flow_parts", "made_masks"]

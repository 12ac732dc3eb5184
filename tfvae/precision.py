"""Mixed precision: float16 or bfloat16 compute in the networks, float32 everywhere else.

    with precision.compute("mixed_bfloat16"):      # tfvae.step.training_loss does this from train.precision
        hidden = precision.run(images, torso, head)   # matmuls in bfloat16, the result in float32

`train.precision` (`PRECISIONS`) picks the compute dtype of the networks'
layers during training. What stays float32, always:

- the variables (the weights Adam updates, and what checkpoints hold); a
  layer reads a bfloat16/float16 copy of its weights (`tf.cast`, whose
  gradient casts back, so gradients arrive in float32);
- the networks' outputs: each encoder and decoder casts its inputs down and
  its outputs back up at its boundary (`run`), so the posterior, the
  likelihood, log p(x|z), the KL and the ELBO sums over 784 pixels and the
  latent dimensions are all float32 (a float16 sum of 784 terms of ~0.1 nats
  would lose ~3 significant digits);
- evaluation (the test ELBO, log p(x), export): it runs outside `compute`.

Mixed precision pays on GPUs with tensor cores (float16 from V100/T4 on,
bfloat16 from A100 on) and on TPUs; on a CPU it is slower than float32 and is
here only so that the tests can run it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import sonnet as snt
import tensorflow as tf

from tfvae.config import PRECISIONS

COMPUTE_DTYPES = {"float32": tf.float32, "mixed_float16": tf.float16, "mixed_bfloat16": tf.bfloat16}

# Loss scaling (Micikevicius et al., 2018): the gradient is taken of loss * S
# and divided by S afterwards, so that small backward activations in float16
# (normal down to 6e-5, subnormal to 6e-8) do not flush to zero. A fixed
# S = 128 suffices for these networks: the largest backward values are the
# per-example logit gradients divided by the batch (< 1) and weight gradients
# of at most ~10 before scaling, so 128 S leaves a factor > 50 to float16's
# largest value (65504). A step whose scaled gradient still overflows is a
# non-finite step, stopped or skipped by train.on_nonfinite like any other.
# bfloat16 has float32's exponent range and needs no scaling.
LOSS_SCALES = {"float32": 1.0, "mixed_float16": 128.0, "mixed_bfloat16": 1.0}

_COMPUTE_DTYPE: contextvars.ContextVar[tf.DType] = contextvars.ContextVar("tfvae_compute_dtype", default=tf.float32)


@contextlib.contextmanager
def compute(name: str) -> Iterator[tf.DType]:
    """Networks called inside run in the compute dtype `name` (one of PRECISIONS) names; yields that dtype."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    token = _COMPUTE_DTYPE.set(COMPUTE_DTYPES[name])
    try:
        yield COMPUTE_DTYPES[name]
    finally:
        _COMPUTE_DTYPE.reset(token)


def compute_dtype() -> tf.DType:
    """The compute dtype in effect (float32 outside `compute`)."""
    return _COMPUTE_DTYPE.get()


def loss_scale(name: str) -> float:
    """The factor the loss is multiplied by before differentiation (see LOSS_SCALES)."""
    return LOSS_SCALES[name]


def gradients(tape: tf.GradientTape, loss: tf.Tensor, variables, name: str) -> list[tf.Tensor]:
    """d loss / d variables (float32), taken of loss * loss_scale(name) and divided back (see LOSS_SCALES)."""
    scale = loss_scale(name)
    if scale == 1.0:
        return tape.gradient(loss, variables)
    scaled = tape.gradient(loss, variables, output_gradients=tf.constant(scale, loss.dtype))  # = d(S * loss)
    return [None if gradient is None else gradient / scale for gradient in scaled]


def run(inputs: tf.Tensor, *layers: snt.Module) -> tf.Tensor:
    """`layers[-1](...layers[0](inputs))` in the compute dtype, with float32 weights and a float32 result.

    The weights are made in float32 first (Sonnet layers create them in the
    dtype of their first input), then read as compute-dtype copies.
    """
    dtype = compute_dtype()
    if dtype == tf.float32:
        return _chain(inputs, layers)
    if not all(layer.variables for layer in layers):
        _chain(tf.cast(inputs, tf.float32), layers)  # create the weights in float32
    modules = [module for layer in layers for module in (layer, *layer.submodules)]
    with snt.custom_variable_getter(lambda variable: tf.cast(variable, dtype), instances=modules):
        outputs = _chain(tf.cast(inputs, dtype), layers)
    return tf.cast(outputs, tf.float32)


def _chain(inputs: tf.Tensor, layers) -> tf.Tensor:
    for layer in layers:
        inputs = layer(inputs)
    return inputs


__all__ = ["COMPUTE_DTYPES", "LOSS_SCALES", "PRECISIONS", "compute", "compute_dtype", "gradients", "loss_scale", "run"]

"""The samplers' interface (`Sampler`), the prior as one (`PriorSampler`), temperature, and the training loop
the trained samplers share (see the package docstring, `tfvae.samplers`)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, optimizers

tfd = tfp.distributions

KINDS = ("prior", "gmm", "two-stage", "flow")
FITTED = KINDS[1:]  # the kinds fitted to codes (and saved); "prior" is the model's own


def check_temperature(temperature) -> float:
    """`temperature` as a float, or one ValueError line: it must be a finite number > 0."""
    if not checks.is_positive_number(temperature):
        raise ValueError(f"temperature must be a number > 0 (it scales the sampler's standard deviation; 1 draws "
                         f"from the fitted density), got {temperature!r}")
    return float(temperature)


def normal_draws(shape, seed: tf.Tensor | None) -> tf.Tensor:
    """N(0, 1) draws float32 of `shape`: stateless (Philox) with a [2] seed, from TF's global generator without."""
    if seed is None:
        return tf.random.normal(shape)
    return tf.random.stateless_normal(shape, seed=tf.cast(seed, tf.int32), alg="philox")


class SeededInit(snt.initializers.Initializer):
    """Sonnet Linear's default weights (truncated normal, stddev 1/sqrt(fan_in)) drawn statelessly: the k-th
    variable made with it uses the seed (seed, k), so a sampler built with the same seed starts the same."""

    def __init__(self, seed: int):
        self._seed, self._count = int(seed), 0

    def __call__(self, shape, dtype) -> tf.Tensor:
        self._count += 1
        stddev = 1.0 / math.sqrt(shape[0]) if len(shape) else 1.0
        return tf.random.stateless_truncated_normal(shape, seed=[self._seed, self._count], stddev=stddev, dtype=dtype)


# --------------------------------------------------------------------------- tempering a prior
def tempered(distribution: tfd.Distribution, temperature) -> tfd.Distribution:
    """`distribution` with its standard deviations scaled by `temperature` (its locations kept).

    A Normal (or an `Independent` over one), a `MultivariateNormalTriL`, or a `MixtureSameFamily` of those
    (the learned mixture prior, a VampPrior): each component scaled, the mixture weights kept. T = 1 returns
    `distribution` itself. `temperature` may be a tensor (an exported signature's input).

    Raises:
      ValueError: T <= 0; or another kind of distribution at T != 1 (naming it).
    """
    if not tf.is_tensor(temperature):
        if check_temperature(temperature) == 1.0:
            return distribution
    if isinstance(distribution, tfd.Independent):
        return tfd.Independent(tempered(distribution.distribution, temperature),
                               distribution.reinterpreted_batch_ndims)
    if isinstance(distribution, tfd.Normal):
        return tfd.Normal(distribution.loc, distribution.scale * temperature)
    if isinstance(distribution, tfd.MultivariateNormalTriL):
        return tfd.MultivariateNormalTriL(distribution.loc, distribution.scale.to_dense() * temperature)
    if isinstance(distribution, tfd.MixtureSameFamily):
        return tfd.MixtureSameFamily(distribution.mixture_distribution,
                                     tempered(distribution.components_distribution, temperature))
    raise ValueError(f"a temperature scales a Normal prior or a mixture of Normals; this prior is a "
                     f"{type(distribution).__name__}: draw it at temperature 1, or fit a sampler (gmm, flow)")


def check_count(n) -> int | tf.Tensor:
    """`n` draws: a positive int, or a tensor (checked where its value is known)."""
    if tf.is_tensor(n):
        value = tf.get_static_value(n)
        return n if value is None else checks.positive_int(int(value), "n")
    return checks.positive_int(n, "n")


# --------------------------------------------------------------------------- the interface
class Sampler(snt.Module):
    """A density over codes z [latent] fitted after training: `fit`, `sample`, `log_prob` (module docstring).

    Subclasses set `kind`, create every variable in `__init__` (so `load` can restore into a new one), and
    define `_fit(codes) -> dict` and `distribution(temperature)` or `sample` and `log_prob`.
    """

    kind = ""
    min_codes = 2  # the fewest codes a fit takes

    def __init__(self, latent_size: int, seed: int, name: str):
        super().__init__(name=name)
        self.latent_size = checks.positive_int(latent_size, "latent_size")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self._fit_json = "null"  # what `fit` did, as JSON (a dict attribute would be wrapped by tf.Module tracking)

    def options(self) -> dict:
        """The constructor's keyword arguments besides latent_size, JSON-ready (what `save` writes)."""
        return {"seed": self.seed}

    def fit(self, codes) -> dict:
        """Fits the sampler to `codes` float [N, latent] (posterior means of training images).

        Returns (and keeps as `fit_record`) a JSON-ready dict: "codes" (N), "seconds", and what the kind reports
        (its final mean log-likelihood or loss in nats per code, iterations or steps).

        Raises:
          ValueError: codes that are not [N, latent_size] finite numbers, or fewer than the kind needs.
        """
        codes = self._checked_codes(codes)
        started = time.perf_counter()
        record = {"codes": int(codes.shape[0]), **self._fit(codes)}
        record["seconds"] = round(time.perf_counter() - started, 3)
        self._fit_json = json.dumps(record)
        return record

    @property
    def fit_record(self) -> dict | None:
        """What `fit` did (a JSON-ready dict; see `fit`), or None before it."""
        return json.loads(self._fit_json)

    def _checked_codes(self, codes) -> np.ndarray:
        array = np.asarray(codes, np.float64)
        if array.ndim != 2 or array.shape[1] != self.latent_size:
            raise ValueError(f"the {self.kind} sampler fits codes [N, {self.latent_size}]; got shape "
                             f"{list(array.shape)}")
        if len(array) < self.min_codes:
            raise ValueError(f"the {self.kind} sampler needs at least {self.min_codes} codes to fit; got {len(array)}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"the codes given to the {self.kind} sampler have NaN or infinite values")
        return array

    def _fit(self, codes: np.ndarray) -> dict:
        raise NotImplementedError

    def distribution(self, temperature=1.0) -> tfd.Distribution:
        """The fitted density over z (event [latent]) at `temperature`."""
        raise NotImplementedError

    def sample(self, n, seed: tf.Tensor | None = None, temperature=1.0) -> tf.Tensor:
        """n draws z float32 [n, latent]; `seed` a stateless [2] int seed (the same seed, the same draws)."""
        return self.distribution(temperature).sample(check_count(n), seed=seed)

    def log_prob(self, z) -> tf.Tensor:
        """log density of codes z [n, latent], nats: float32 [n]."""
        return self.distribution().log_prob(tf.convert_to_tensor(z, tf.float32))


class PriorSampler:
    """The model's own prior p(z) as a sampler (nothing to fit): `sample(n, seed, temperature)`, `log_prob`."""

    kind = "prior"

    def __init__(self, prior: tfd.Distribution):
        self.prior = prior
        self.latent_size = int(prior.event_shape[-1])
        self.fit_record = None

    def sample(self, n, seed: tf.Tensor | None = None, temperature=1.0) -> tf.Tensor:
        """n draws z ~ p(z) with its scale times `temperature`: [n, latent]."""
        return tempered(self.prior, temperature).sample(check_count(n), seed=seed)

    def log_prob(self, z) -> tf.Tensor:
        return self.prior.log_prob(z)


class _Tempered:
    """A sampler drawn at a fixed temperature: `sample(n, seed)` (what `vae.sample(n, sampler=...)` calls)."""

    def __init__(self, sampler, temperature):
        self.sampler, self.temperature = sampler, temperature
        self.kind, self.latent_size = sampler.kind, sampler.latent_size

    def sample(self, n, seed: tf.Tensor | None = None) -> tf.Tensor:
        return self.sampler.sample(n, seed=seed, temperature=self.temperature)

    def log_prob(self, z) -> tf.Tensor:
        return self.sampler.log_prob(z)


def with_temperature(sampler, temperature) -> _Tempered:
    """`sampler` that draws at `temperature` (> 0) whenever it is asked for `sample(n, seed)`."""
    if not tf.is_tensor(temperature):
        check_temperature(temperature)
    return _Tempered(sampler, temperature)


# --------------------------------------------------------------------------- trained samplers (two-stage, flow)
class Standardised(Sampler):
    """A sampler trained on codes standardised by their mean and standard deviation (variables `shift`, `scale`
    [latent], set by `fit`), for a fixed number of Adam steps on minibatches drawn with stateless seeds."""

    def __init__(self, latent_size: int, seed: int, name: str, steps: int, batch_size: int, learning_rate: float):
        super().__init__(latent_size, seed, name)
        self.steps = checks.positive_int(steps, "steps")
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        self.learning_rate = checks.positive_number(learning_rate, "learning_rate")
        self._init = SeededInit(seed)
        self.shift = tf.Variable(tf.zeros([latent_size]), trainable=False, name="shift")
        self.scale = tf.Variable(tf.ones([latent_size]), trainable=False, name="scale")

    def options(self) -> dict:
        return {"steps": self.steps, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                **super().options()}

    def _loss(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """The training loss of standardised codes [b, latent], nats per code."""
        raise NotImplementedError

    def _fit(self, codes: np.ndarray) -> dict:
        self.shift.assign(codes.mean(axis=0).astype(np.float32))
        self.scale.assign(np.maximum(codes.std(axis=0), 1e-6).astype(np.float32))
        standardised = tf.constant((codes - codes.mean(axis=0)) / np.maximum(codes.std(axis=0), 1e-6), tf.float32)
        losses = train_for_steps(self, self._loss, standardised, self.steps, min(self.batch_size, len(codes)),
                                 self.learning_rate, self.seed)
        # The loss is of the standardised codes; log p(z) = log p(s) - sum log scale.
        return {"steps": self.steps, "final_loss": losses[-1] + float(np.sum(np.log(self.scale.numpy()))),
                "losses_every_500_steps": [round(value, 4) for value in losses]}

    def _standardise(self, z: tf.Tensor) -> tf.Tensor:
        return (tf.convert_to_tensor(z, tf.float32) - self.shift) / self.scale


def train_for_steps(module: snt.Module, loss, data: tf.Tensor, steps: int, batch_size: int, learning_rate: float,
                    seed: int, chunk: int = 500) -> list[float]:
    """Adam (`optimizers.build_optimizer`) on `module.trainable_variables` for `steps` steps of `loss(batch, seed)`
    on minibatches of `data` [N, d] drawn with replacement, step k from the stateless seed (seed, k). Returns the
    mean loss of each `chunk` steps."""
    optimizer = optimizers.build_optimizer(module, learning_rate)
    variables = module.trainable_variables
    count = int(data.shape[0])

    @tf.function  # (XLA here: 2.5x slower for 2,000 steps, its compile included)
    def run(first, last):
        total = tf.constant(0.0)
        for k in tf.range(first, last):
            step_seed = tf.stack([tf.constant(seed, tf.int32), k])
            index = tf.random.stateless_uniform([batch_size], step_seed, minval=0, maxval=count, dtype=tf.int32)
            with tf.GradientTape() as tape:
                value = loss(tf.gather(data, index), tf.stack([step_seed[0] + 1, k]))
            optimizer.apply(tape.gradient(value, variables), variables)
            total += value
        return total / tf.cast(last - first, tf.float32)

    return [float(run(tf.constant(first), tf.constant(min(first + chunk, steps))))
            for first in range(0, steps, chunk)]


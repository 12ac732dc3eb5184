"""Experiment configuration: small frozen dataclasses and named presets.

An `Experiment` is everything a run depends on. Presets reproduce named
setups; the CLI and experiment scripts only override fields with
`override(experiment, {"train.epochs": 3})`. Every field is validated when
the dataclass is built, so a bad value fails at once with a message that
names the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from tfvae import families

__all__ = ["BINARIZATIONS", "ACTIVATIONS", "LIKELIHOODS", "ARCHITECTURES", "PRIORS", "POSTERIORS", "GRADIENTS",
    "KL_ESTIMATORS", "OBJECTIVES", "KL_SCHEDULES", "LR_SCHEDULES", "NONFINITE_POLICIES", "DEVICES", "STRATEGIES",
    "PRECISIONS", "OPTIMIZERS", "DIP_KINDS", "ConfigError", "DataConfig", "ModelConfig", "TrainConfig",
    "Experiment", "override", "parse_value", "parse_assignment", "format_assignments", "flat_fields", "differences",
    "PRESETS", "DEFAULT_PRESET", "preset"]

BINARIZATIONS = ("none", "threshold", "dynamic")
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "softplus", "sigmoid")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")
ARCHITECTURES = families.choices("architecture")  # the model families' table (tfvae.families) says them
PRIORS = families.choices("prior")
POSTERIORS = families.choices("posterior")
GRADIENTS = ("plain", "dreg")
KL_ESTIMATORS = ("analytic", "monte_carlo")
OBJECTIVES = ("elbo", "iwae")
KL_SCHEDULES = ("constant", "linear", "cyclical")
LR_SCHEDULES = ("constant", "exponential")
NONFINITE_POLICIES = ("stop", "skip")
DEVICES = ("auto", "cpu", "gpu")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "sgd", "momentum")
DIP_KINDS = ("none", "i", "ii")


class ConfigError(ValueError):
    """A configuration value is out of range or of the wrong kind."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _one_of(field: str, value: Any, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"{field} must be one of {', '.join(choices)}; got {value!r}")


def _positive_int(field: str, value: Any) -> None:
    _require(_is_int(value) and value > 0, f"{field} must be a positive integer, got {value!r}")


def _boolean(field: str, value: Any) -> None:
    _require(isinstance(value, bool), f"{field} must be true or false, got {value!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are preprocessed."""

    name: str = "mnist"
    # "threshold" is pixel >= 0.5, the binarization of the classic Bernoulli
    # walkthrough (torchvision's ToTensor followed by round()).
    binarize: str = "threshold"
    batch_size: int = 128
    data_dir: str | None = None  # None: TFDS's default (~/tensorflow_datasets)
    # For tuning without the test set: hold out the last `validation` images
    # of the training split (in TFDS's order); the run trains on the others,
    # and its held-out numbers (history's test_* columns, `tfvae evaluate`)
    # are computed on those images instead of the test split. 0: off.
    validation: int = 0

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and bool(self.name), f"data.name must be a dataset name, got {self.name!r}")
        _one_of("data.binarize", self.binarize, BINARIZATIONS)
        _positive_int("data.batch_size", self.batch_size)
        _require(_is_int(self.validation) and self.validation >= 0,
                 f"data.validation must be a number of training images >= 0 (0: off), got {self.validation!r}")

    def split(self, which: str) -> str:
        """The TFDS split that `which` ("train" or "test") reads: "train[:-N]" and "train[-N:]" with validation N."""
        _one_of("split", which, ("train", "test"))
        if not self.validation:
            return which
        return f"train[:-{self.validation}]" if which == "train" else f"train[-{self.validation}:]"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The encoder and decoder networks and the likelihood."""

    hidden_sizes: tuple[int, ...] = (400,)  # encoder; the decoder mirrors it
    latent_size: int = 20
    activation: str = "relu"
    likelihood: str = "bernoulli"
    # Floor on the posterior standard deviation: keeps log q(z|x) finite.
    min_scale: float = 1e-4
    # The Normal likelihood's per-pixel standard deviation: a number > 0 fixes
    # it (0.1 ~ "MSE + KL" with weight 1 / (2 * 0.1**2) on the squared error),
    # "learned" makes it one trainable scale per pixel. Unused by other likelihoods.
    normal_scale: float | str = "learned"
    architecture: str = "mlp"  # "conv": conv_channels first, then hidden_sizes dense layers
    conv_channels: tuple[int, ...] = (32, 64)  # stride-2 conv layers of the conv encoder; the decoder mirrors it
    # A Normal posterior with its scale fixed at min_scale: with train.beta = 0
    # the plain autoencoder baseline (see tfvae.nets.Encoder).
    deterministic_encoder: bool = False
    # p(z): "normal" N(0, I); "mixture", a learned mixture of prior_components
    # diagonal Gaussians; "vamp", the VampPrior (Tomczak & Welling, 2018): the
    # encoder's posteriors at prior_components learned pseudo-inputs, mixed
    # equally (the paper uses 500). See tfvae.priors.
    prior: str = "normal"
    prior_components: int = 10
    # q(z|x): "normal" (diagonal), or that Normal pushed through flow_steps
    # steps conditioned on the image: "iaf" (inverse autoregressive flow,
    # Kingma et al., 2016) or "coupling" (affine coupling). See tfvae.flows.
    posterior: str = "normal"
    flow_steps: int = 2
    # architecture "two_layer" (Burda et al., 2015): z1 of latent_size above x
    # (hidden_sizes, mirrored by p(x|z1)), z2 of top_latent_size above z1
    # (top_hidden_sizes both ways); latent codes are z = [z1, z2]. See tfvae.hierarchy.
    top_latent_size: int = 50
    top_hidden_sizes: tuple[int, ...] = (100, 100)
    # The conditional VAE (Sohn et al., 2015): encoder and decoder also take the
    # image's class, one of num_classes (the dataset's labels 0..num_classes-1);
    # p(z) stays as `prior` says. See tfvae.conditioning.
    conditional: bool = False
    num_classes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if isinstance(self.conv_channels, (list, tuple)):
            object.__setattr__(self, "conv_channels", tuple(self.conv_channels))
        _require(
            all(_is_int(size) and size > 0 for size in self.hidden_sizes),
            f"model.hidden_sizes must be positive integers, got {list(self.hidden_sizes)}",
        )
        _positive_int("model.latent_size", self.latent_size)
        _one_of("model.activation", self.activation, ACTIVATIONS)
        _one_of("model.likelihood", self.likelihood, LIKELIHOODS)
        _require(
            _is_number(self.min_scale) and self.min_scale > 0,
            f"model.min_scale must be a positive number, got {self.min_scale!r}",
        )
        _require(
            self.normal_scale == "learned" or (_is_number(self.normal_scale) and self.normal_scale > 0),
            f"model.normal_scale must be a number > 0 (a fixed scale) or \"learned\", got {self.normal_scale!r}",
        )
        _one_of("model.architecture", self.architecture, ARCHITECTURES)
        _require(
            isinstance(self.conv_channels, tuple)
            and len(self.conv_channels) > 0
            and all(_is_int(size) and size > 0 for size in self.conv_channels),
            f"model.conv_channels must be a non-empty list of positive integers, got {self.conv_channels!r}",
        )
        _boolean("model.deterministic_encoder", self.deterministic_encoder)
        object.__setattr__(self, "top_hidden_sizes", tuple(self.top_hidden_sizes))
        _one_of("model.prior", self.prior, PRIORS)
        _positive_int("model.prior_components", self.prior_components)
        _one_of("model.posterior", self.posterior, POSTERIORS)
        _positive_int("model.flow_steps", self.flow_steps)
        _positive_int("model.top_latent_size", self.top_latent_size)
        _require(
            len(self.top_hidden_sizes) > 0 and all(_is_int(size) and size > 0 for size in self.top_hidden_sizes),
            f"model.top_hidden_sizes must be one or more positive integers, got {list(self.top_hidden_sizes)}",
        )
        _boolean("model.conditional", self.conditional)
        _positive_int("model.num_classes", self.num_classes)
        combination = families.problem(self)  # the families' combination rules
        _require(combination is None, combination or "")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The objective's weight, the optimizer and the schedule of a run."""

    epochs: int = 10
    learning_rate: float = 1e-3
    # The learning rate over training steps (tfvae.train.learning_rate):
    # "constant", or "exponential": learning_rate * lr_decay_rate ** (step /
    # lr_decay_steps), a smooth version of Burda et al.'s (2015) stepwise decay.
    lr_schedule: str = "constant"
    lr_decay_rate: float = 0.1
    lr_decay_steps: int = 100_000
    # "adam" (Kingma & Ba, 2015), plain "sgd", or "momentum" (heavy-ball SGD
    # with coefficient `momentum`); the Sonnet optimizers of the same names.
    optimizer: str = "adam"
    momentum: float = 0.9  # used by "momentum" only
    beta: float = 1.0  # weight of KL(q(z|x) || p(z)); 1 is the ELBO
    # Fixed so that a run repeats; documents quote no single seed but the mean and spread over seeds 1, 2, 3
    # (why 2 is the default: docs/benchmarks/index.md, "How the presets came to be").
    seed: int = 2
    log_every: int = 100  # steps between rows of history.csv
    # Epochs between test passes (the test-set ELBO in history.csv), and always at the last epoch and at a time
    # budget's stop; training is the same whatever it is. A test pass is a fixed cost an epoch, a large share of a
    # small model's epoch: 10 spends a tenth of it.
    test_every: int = 1
    max_checkpoints: int = 2
    # Steps between checkpoints besides the one at each epoch end (0: epoch ends only).
    checkpoint_every: int = 0
    # A non-finite loss or gradient: "stop" with an error naming the step and
    # term, or "skip" the batch and count it in history.csv's `skipped` column.
    on_nonfinite: str = "stop"
    # TensorFlow op determinism: a resumed run then equals an uninterrupted one bit for bit.
    deterministic: bool = False
    # The objective (tfvae.step.training_loss). "elbo": the beta-weighted
    # negative ELBO averaged over num_samples draws of z; "iwae": the negative
    # IWAE bound with iwae_k importance samples (Burda et al., 2015), averaged
    # over num_samples independent bounds (iwae_k = 1 is the ELBO again).
    objective: str = "elbo"
    # Gradients of the IWAE bound: "plain" (the reparameterised gradient of the
    # bound) or "dreg" (Tucker et al., 2019: doubly reparameterised for the
    # encoder, lower variance as iwae_k grows; needs a Normal posterior).
    gradient: str = "plain"
    # beta-TCVAE (Chen et al., 2018): the KL-weighted rate adds (tc_weight - 1)
    # * the minibatch estimate of the total correlation of q(z), so the KL
    # schedule's weight scales it too; 1 is off.
    tc_weight: float = 1.0
    # FactorVAE (Kim & Mnih, 2018): the loss adds factor_weight (their gamma) times a discriminator's
    # density-ratio estimate of the total correlation of q(z); 0 is off. The discriminator, an MLP on codes with
    # discriminator_hidden_sizes leaky-ReLU layers and 2 logits (the paper's 5 x 1000), is trained in the same
    # step on the batch's codes and their dimension-wise permutation, by its own Adam at
    # discriminator_learning_rate with beta1 0.5, beta2 0.9 (the paper's). See tfvae.disentangling.
    factor_weight: float = 0.0
    discriminator_hidden_sizes: tuple[int, ...] = (1000,) * 5
    discriminator_learning_rate: float = 1e-4
    # DIP-VAE (Kumar et al., 2018): "i" adds dip_lambda_offdiag * (sum of squared off-diagonal entries) +
    # dip_lambda_diag * sum (diagonal - 1)^2 of the covariance of the batch's posterior means, "ii" of the
    # aggregate posterior's (that plus the mean posterior variance); "none" is off. dip_lambda_diag None is
    # 10 * dip_lambda_offdiag for "i" and dip_lambda_offdiag for "ii" (the paper's ratios, disentanglement_lib's
    # defaults); 10 is the middle of the range disentanglement_lib sweeps (1 to 50).
    dip: str = "none"
    dip_lambda_offdiag: float = 10.0
    dip_lambda_diag: float | None = None
    # beta-VAE with a controlled capacity (Burgess et al., 2018): the loss is distortion + capacity_gamma *
    # |rate - C|, C growing linearly from 0 to capacity_max nats over capacity_steps steps, in place of beta *
    # rate. 0 (or null) is off. The paper's dSprites run: 25 nats over 100,000 steps, gamma 1000.
    capacity_max: float | None = 0.0
    capacity_steps: int = 100_000
    capacity_gamma: float = 1000.0
    num_samples: int = 1
    iwae_k: int = 5
    kl_estimator: str = "analytic"  # or "monte_carlo": log q(z|x) - log p(z) at the drawn z
    # Free bits (Kingma et al., 2016): each latent dimension's batch-mean KL
    # counts as at least this many nats in the loss. 0 turns it off. ELBO only.
    free_bits: float = 0.0
    # The KL weight over training steps: "constant" (beta), "linear" (0 -> beta
    # over warmup_steps, then beta) or "cyclical" (Fu et al., 2019: every
    # cycle_steps, a ramp 0 -> beta over the first half, then beta).
    kl_schedule: str = "constant"
    warmup_steps: int = 10_000
    cycle_steps: int = 10_000
    # Where training runs (tfvae.devices): "auto" is the first GPU if TensorFlow
    # sees one, else the CPU; "gpu" is an error when there is none.
    device: str = "auto"
    # Data parallelism (tfvae.distribute): "default" (one device), "mirrored"
    # (every local GPU) or "multi_worker" (the machines TF_CONFIG lists).
    # data.batch_size is the global batch, split over the replicas.
    distribute: str = "default"
    # Compile the training loop on in-memory data with XLA (one compiled call
    # runs every step of a logging interval); see tfvae.train.
    jit_compile: bool = True
    # Threads inside and between TensorFlow ops; 0 is TensorFlow's default (one per core).
    threads: int = 0
    # The networks' compute dtype in training (tfvae.precision): "float32", or
    # float16 / bfloat16 layers with float32 weights, loss and evaluation
    # ("mixed_float16" for GPUs with tensor cores, "mixed_bfloat16" for A100s
    # and TPUs). Off by default: on a CPU it is slower, not faster.
    precision: str = "float32"

    def __post_init__(self) -> None:
        if isinstance(self.discriminator_hidden_sizes, list):
            object.__setattr__(self, "discriminator_hidden_sizes", tuple(self.discriminator_hidden_sizes))
        _positive_int("train.epochs", self.epochs)
        _require(
            _is_number(self.learning_rate) and self.learning_rate > 0,
            f"train.learning_rate must be a positive number, got {self.learning_rate!r}",
        )
        _one_of("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _require(
            _is_number(self.lr_decay_rate) and 0 < self.lr_decay_rate <= 1,
            f"train.lr_decay_rate must be a number in (0, 1] (the factor per lr_decay_steps), got {self.lr_decay_rate!r}",
        )
        _positive_int("train.lr_decay_steps", self.lr_decay_steps)
        _one_of("train.optimizer", self.optimizer, OPTIMIZERS)
        _require(
            _is_number(self.momentum) and 0 <= self.momentum < 1,
            f"train.momentum must be a number in [0, 1), got {self.momentum!r}",
        )
        _require(
            _is_number(self.beta) and self.beta >= 0,
            f"train.beta must be a number >= 0 (0 is a plain autoencoder objective), got {self.beta!r}",
        )
        _require(_is_int(self.seed) and self.seed >= 0, f"train.seed must be an integer >= 0, got {self.seed!r}")
        _positive_int("train.log_every", self.log_every)
        _positive_int("train.test_every", self.test_every)
        _positive_int("train.max_checkpoints", self.max_checkpoints)
        _require(
            _is_int(self.checkpoint_every) and self.checkpoint_every >= 0,
            f"train.checkpoint_every must be an integer >= 0 (0: at epoch ends only), got {self.checkpoint_every!r}",
        )
        _one_of("train.on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        _boolean("train.deterministic", self.deterministic)
        _one_of("train.gradient", self.gradient, GRADIENTS)
        _require(self.gradient == "plain" or self.objective == "iwae",
                 f"train.gradient=dreg is a gradient of the IWAE bound: set train.objective=iwae (got {self.objective!r})")
        _require(_is_number(self.tc_weight) and self.tc_weight >= 0,
                 f"train.tc_weight must be a number >= 0 (1 is off), got {self.tc_weight!r}")
        _require(self.tc_weight == 1 or self.objective == "elbo",
                 f"train.tc_weight applies to the ELBO's rate (objective {self.objective!r}, tc_weight {self.tc_weight!r})")
        _one_of("train.objective", self.objective, OBJECTIVES)
        self._check_disentangling()
        _require(
            _is_int(self.num_samples) and self.num_samples >= 1,
            f"train.num_samples must be an integer >= 1, got {self.num_samples!r}",
        )
        _require(
            _is_int(self.iwae_k) and self.iwae_k >= 1,
            f"train.iwae_k must be an integer >= 1 (the number of importance samples), got {self.iwae_k!r}",
        )
        _one_of("train.kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _require(
            _is_number(self.free_bits) and self.free_bits >= 0,
            f"train.free_bits must be a number >= 0 (nats per latent dimension; 0 is off), got {self.free_bits!r}",
        )
        _require(
            self.free_bits == 0 or self.objective == "elbo",
            f"train.free_bits applies to the ELBO's KL term; the IWAE bound has none (objective "
            f"{self.objective!r}, free_bits {self.free_bits!r})",
        )
        _one_of("train.kl_schedule", self.kl_schedule, KL_SCHEDULES)
        _positive_int("train.warmup_steps", self.warmup_steps)
        _require(
            _is_int(self.cycle_steps) and self.cycle_steps > 1,
            f"train.cycle_steps must be an integer > 1, got {self.cycle_steps!r}",
        )
        _one_of("train.device", self.device, DEVICES)
        _one_of("train.distribute", self.distribute, STRATEGIES)
        _boolean("train.jit_compile", self.jit_compile)
        _require(
            _is_int(self.threads) and self.threads >= 0,
            f"train.threads must be an integer >= 0 (0: one per core, TensorFlow's default), got {self.threads!r}",
        )
        _one_of("train.precision", self.precision, PRECISIONS)

    @property
    def disentangling(self) -> tuple[str, ...]:
        """The disentangling objectives this config turns on, by field: tc_weight, factor_weight, dip, capacity_max."""
        on = {"tc_weight": self.tc_weight != 1, "factor_weight": _is_number(self.factor_weight) and self.factor_weight > 0,
              "dip": self.dip != "none", "capacity_max": bool(self.capacity_max)}
        return tuple(name for name, active in on.items() if active)

    def _check_disentangling(self) -> None:
        _require(_is_number(self.factor_weight) and self.factor_weight >= 0,
                 f"train.factor_weight must be a number >= 0 (FactorVAE's gamma; 0 is off), got {self.factor_weight!r}")
        _require(isinstance(self.discriminator_hidden_sizes, tuple) and len(self.discriminator_hidden_sizes) > 0
                 and all(_is_int(size) and size > 0 for size in self.discriminator_hidden_sizes),
                 "train.discriminator_hidden_sizes must be a non-empty list of positive integers, "
                 f"got {self.discriminator_hidden_sizes!r}")
        _require(_is_number(self.discriminator_learning_rate) and self.discriminator_learning_rate > 0,
                 f"train.discriminator_learning_rate must be a positive number, got {self.discriminator_learning_rate!r}")
        _one_of("train.dip", self.dip, DIP_KINDS)
        _require(_is_number(self.dip_lambda_offdiag) and self.dip_lambda_offdiag >= 0,
                 f"train.dip_lambda_offdiag must be a number >= 0, got {self.dip_lambda_offdiag!r}")
        _require(self.dip_lambda_diag is None or (_is_number(self.dip_lambda_diag) and self.dip_lambda_diag >= 0),
                 f"train.dip_lambda_diag must be a number >= 0, or null for the paper's ratio, got {self.dip_lambda_diag!r}")
        _require(self.capacity_max is None or (_is_number(self.capacity_max) and self.capacity_max >= 0),
                 f"train.capacity_max must be a number of nats >= 0 (0 or null: off), got {self.capacity_max!r}")
        _positive_int("train.capacity_steps", self.capacity_steps)
        _require(_is_number(self.capacity_gamma) and self.capacity_gamma > 0,
                 f"train.capacity_gamma must be a positive number, got {self.capacity_gamma!r}")
        chosen = self.disentangling
        _require(len(chosen) <= 1, f"train.{' and train.'.join(chosen)} are different disentangling objectives: "
                                   "set one of them (tc_weight 1, factor_weight 0, dip none and capacity_max 0 are off)")
        if not chosen or chosen == ("tc_weight",):
            return
        field = f"train.{chosen[0]}"
        _require(self.objective == "elbo", f"{field} changes the ELBO's loss: set train.objective=elbo (got {self.objective!r})")
        _require(self.free_bits == 0, f"{field} and train.free_bits are different rates: set train.free_bits=0")
        _require(chosen != ("capacity_max",) or (self.beta == 1 and self.kl_schedule == "constant"),
                 "train.capacity_max replaces beta * rate by capacity_gamma * |rate - C|: leave train.beta at 1 and "
                 f"train.kl_schedule constant (got {self.beta!r}, {self.kl_schedule!r})")
        _require(chosen != ("factor_weight",) or self.distribute == "default",
                 "train.factor_weight trains its discriminator on one device: set train.distribute=default "
                 f"(got {self.distribute!r})")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One run: a name plus its data, model and training settings."""

    name: str
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        factorised = families.factorised_posterior(self.model)
        _require(factorised or (self.train.free_bits == 0 and self.train.tc_weight == 1),
                 "train.free_bits and train.tc_weight need a factorised posterior; a two_layer or flow posterior "
                 f"is not (free_bits {self.train.free_bits!r}, tc_weight {self.train.tc_weight!r})")
        _require(families.factorised_prior(self.model) or self.train.free_bits == 0,
                 f"train.free_bits needs a factorised prior; model.prior={self.model.prior} is a mixture")
        _require(self.train.dip == "none" or factorised,
                 f"train.dip={self.train.dip} needs a diagonal Normal posterior (its means and variances); a "
                 "two_layer or flow posterior is not")
        _require(self.train.factor_weight == 0 or self.data.batch_size >= 2,
                 "data.batch_size must be >= 2 with train.factor_weight > 0: FactorVAE's discriminator compares "
                 f"codes with their permutation across the batch (got {self.data.batch_size})")
        _require(self.train.gradient == "plain" or factorised,
                 "train.gradient=dreg needs a diagonal Normal posterior; a two_layer or flow posterior is not")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Experiment:
        """The inverse of `to_dict`; unknown fields are an error."""
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        unknown = set(values) - {"name", *sections}
        _require(not unknown, f"unknown config sections: {sorted(unknown)}")
        kwargs: dict[str, Any] = {"name": values["name"]}
        for section, section_cls in sections.items():
            given = dict(values.get(section, {}))
            known = {field.name for field in dataclasses.fields(section_cls)}
            extra = set(given) - known
            _require(not extra, f"unknown fields in {section}: {sorted(extra)}")
            kwargs[section] = section_cls(**given)
        return cls(**kwargs)


def override(experiment: Experiment, changes: Mapping[str, Any]) -> Experiment:
    """Returns `experiment` with dotted fields replaced, e.g. {"train.beta": 0.5}."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if not field:
            _require(key == "name", f"unknown config field {key!r}")
            top[key] = value
            continue
        _require(section in ("data", "model", "train"), f"unknown config field {key!r}")
        known = {f.name for f in dataclasses.fields(getattr(experiment, section))}
        _require(field in known, f"unknown config field {key!r}; {section} has {', '.join(sorted(known))}")
        sections.setdefault(section, {})[field] = value
    replaced = {name: dataclasses.replace(getattr(experiment, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(experiment, **top, **replaced)


def parse_value(text: str) -> Any:
    """A setting's value from text: JSON where it parses (numbers, lists, null, quoted strings), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """'FIELD=VALUE' -> (FIELD, `parse_value`(VALUE)), a change for `override`.

    Raises:
      ValueError: when there is no '=' or no field before it.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"a setting is FIELD=VALUE (e.g. model.latent_size=2), got {text!r}")
    return key.strip(), parse_value(value)


def format_assignments(changes: Mapping[str, Any]) -> str:
    """Config changes as one line, 'FIELD=VALUE FIELD=VALUE' sorted by field, each value JSON: what
    `parse_assignment` reads back (for run names and results files); '' for no changes."""
    return " ".join(f"{key}={json.dumps(value)}" for key, value in sorted(changes.items()))


def flat_fields(experiment: Experiment) -> dict[str, Any]:
    """Dotted field name ("train.beta") -> its JSON value, for every field of `experiment`."""
    return _flatten(experiment.to_dict())


def differences(a: Experiment, b: Experiment) -> dict[str, tuple[Any, Any]]:
    """Dotted field name -> (value in a, value in b), for every field that differs."""
    flat_a, flat_b = flat_fields(a), flat_fields(b)
    return {key: (flat_a.get(key), flat_b.get(key)) for key in sorted(set(flat_a) | set(flat_b)) if flat_a.get(key) != flat_b.get(key)}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


PRESETS: dict[str, Experiment] = {
    # The classic Bernoulli VAE (walkthrough 003): 784-400-20, ReLU, batch 128,
    # Adam 1e-3, 10 epochs, threshold-binarized MNIST. Published: 87.65 nats.
    "mnist-bernoulli-20d": Experiment(name="mnist-bernoulli-20d"),
    # Its 2-d companion for manifold pictures. Published: 140.24 nats.
    "mnist-bernoulli-2d": Experiment(
        name="mnist-bernoulli-2d",
        model=ModelConfig(hidden_sizes=(400, 150), latent_size=2),
    ),
    # The conditional VAE (Sohn et al., 2015) on the same network: draws of a chosen digit.
    "mnist-cvae": Experiment(name="mnist-cvae", model=ModelConfig(conditional=True)),
    # Seconds, not minutes: for tests, CI and trying the CLI.
    "tiny": Experiment(
        name="tiny",
        data=DataConfig(batch_size=32),
        model=ModelConfig(hidden_sizes=(32,), latent_size=2),
        train=TrainConfig(epochs=1, log_every=10),
    ),
}

# Burda et al. (2015), one stochastic layer: 784-200-200-50, tanh, Bernoulli,
# dynamically binarized MNIST. Published -log p(x) (k = 5000) after 3280
# passes: VAE 86.76, IWAE k=5 85.54, k=50 84.78. They used batch 20 and Adam
# with the learning rate 1e-3 * 10^(-i/7) for 3^i passes, i = 0..7 (from 1e-3
# down to 1e-4). Here the batch is 100 (on a 2-core CPU an epoch of batch 100
# takes a quarter of the time of batch 20) and the rate decays smoothly,
# lr = 1e-3 * 0.1^(step / 1,000,000): sized for the leaderboard's longer
# budgets (benchmarks/loglik.py), 1e-4 after about an hour of the VAE or 2.5
# hours of IWAE k=5 here. Tuned on a validation split (README, "Log-likelihood
# leaderboard"): the peak stays 1e-3 (3e-3 and 5e-4 were tried) and a linear
# KL warm-up over the first 30,000 steps (50 epochs) was added; every family
# preset below inherits both (earlier settings: docs/benchmarks/index.md).
# The test-set ELBO every 25 epochs and at the last, not every epoch: the leaderboard's budgets count fit's
# loop, and a test pass every epoch took 14% of the VAE's epoch but 8% of IWAE k=5's and 6% of DReG's (medians
# of 3 seeds, benchmarks/results/epoch_end_cost.csv), so an equal budget gave the families unequal training.
# Evaluate with `tfvae evaluate RUN_DIR`, which scores one fixed binarization
# of the test set.
_BURDA = Experiment(
    name="mnist-burda-vae",
    data=DataConfig(binarize="dynamic", batch_size=100),
    model=ModelConfig(hidden_sizes=(200, 200), latent_size=50, activation="tanh"),
    train=TrainConfig(
        epochs=750, log_every=600, test_every=25, lr_schedule="exponential", lr_decay_rate=0.1,
        lr_decay_steps=1_000_000, kl_schedule="linear", warmup_steps=30_000,
    ),
)
PRESETS["mnist-burda-vae"] = _BURDA
for _k in (5, 50):
    PRESETS[f"mnist-burda-iwae{_k}"] = override(
        _BURDA, {"name": f"mnist-burda-iwae{_k}", "train.objective": "iwae", "train.iwae_k": _k}
    )
# The families on the same data, networks and schedule (tfvae.priors, tfvae.hierarchy; README "Model families").
_FAMILIES = {
    "mnist-burda-iwae5-dreg": {"train.objective": "iwae", "train.iwae_k": 5, "train.gradient": "dreg"},
    "mnist-burda-mixture": {"model.prior": "mixture", "model.prior_components": 10},
    # Tomczak & Welling (2018) used 500 pseudo-inputs, a KL warm-up and a learning rate of 5e-4. Tuned for time on
    # the validation split (README, "Log-likelihood leaderboard"): 100 pseudo-inputs, whose epoch costs a third of
    # 500's. Their rate too: at 1e-3 the encoder fell onto one code for every image (the decoder drew the mean
    # image, KL 0) in 4 of 5 seeds and stayed there; at 5e-4 every seed left by epoch 7
    # (benchmarks/results/early_collapse.csv).
    "mnist-burda-vampprior": {"model.prior": "vamp", "model.prior_components": 100, "train.learning_rate": 5e-4},
    # Burda et al.'s second architecture: x-200-200-z1(100)-100-100-z2(50), tanh.
    "mnist-burda-two-layer": {"model.architecture": "two_layer", "model.latent_size": 100,
                              "model.top_latent_size": 50, "model.top_hidden_sizes": (100, 100)},
    # Kingma et al. (2016): q(z|x) through inverse autoregressive flow steps; and affine coupling steps.
    "mnist-burda-iaf": {"model.posterior": "iaf", "model.flow_steps": 2},
    "mnist-burda-coupling": {"model.posterior": "coupling", "model.flow_steps": 2},
    # Chen et al. (2018): the total correlation weighted 6 (their beta), for disentangling rather than log p(x).
    "mnist-burda-tcvae": {"train.tc_weight": 6.0},
    # Sohn et al. (2015): encoder and decoder given the digit's class; evaluate estimates -log p(x|y).
    "mnist-burda-cvae": {"model.conditional": True},
}
for _name, _changes in _FAMILIES.items():
    PRESETS[_name] = override(_BURDA, {"name": _name, **_changes})

# Disentangling on dSprites (README of deepmind/dsprites-dataset; tfvae.factors): the six objectives on one
# network each, beta-VAE (Higgins et al., 2017, beta 4 on dSprites), beta-TCVAE (Chen et al., 2018, their
# beta 6 on the TC), FactorVAE (Kim & Mnih, 2018: gamma 40, in the range 10 to 100 they sweep on dSprites; not
# tuned here), DIP-VAE-I (Kumar et al., 2018: lambda_od 10, lambda_d 100) and the capacity-controlled beta-VAE
# (Burgess et al., 2018: gamma 1000, C up to 25 nats).
# data.name loads the factor dataset like any dataset (tfvae.factors.load: "train" every image of the grid, "test"
# a fixed sample of 2,048 of them), so `tfvae train --preset dsprites-tcvae` needs nothing else, and
# `tfvae evaluate RUN_DIR --disentanglement` scores the run against the factors.
_DISENTANGLING = {
    "vae": {},
    "beta-vae": {"train.beta": 4.0},
    "tcvae": {"train.tc_weight": 6.0},
    "factorvae": {"train.factor_weight": 40.0},
    "dipvae": {"train.dip": "i", "train.dip_lambda_offdiag": 10.0},
    "capacity": {"train.capacity_max": 25.0, "train.capacity_gamma": 1000.0},
}
# The CPU-sized procedural dSprites (tfvae.factors.dsprites_small: 11,520 binary 32x32 images, 180 steps an
# epoch at batch 64): an MLP 1024-256-256-10, Adam 1e-3, 20 epochs; the discriminator 3 x 256 (the paper's
# 5 x 1000 is 4 M weights, 12 times the VAE's); the capacity reaches 25 nats at two thirds of the run.
_DSPRITES_SMALL = Experiment(
    name="dsprites-vae",
    data=DataConfig(name="dsprites_small", binarize="none", batch_size=64),
    model=ModelConfig(hidden_sizes=(256, 256), latent_size=10),
    train=TrainConfig(epochs=20, log_every=90, discriminator_hidden_sizes=(256, 256, 256), capacity_steps=2400),
)
# The papers' network for 64x64 dSprites (tfvae.factors.dsprites_procedural, or TFDS's dsprites through
# tfvae.factors.load_tfds), for a GPU: 4 convolutions 32-32-64-64 with 4x4 kernels and stride 2, a 256-unit
# dense layer, 10 latents, mirrored by the decoder (Burgess et al., 2018, Table 1; Kim & Mnih, 2018); Adam 1e-4,
# batch 64, 26 epochs of 737,280 images (about 300,000 steps); the paper's discriminator (5 x 1000) and
# capacity schedule (25 nats over 100,000 steps).
_DSPRITES_64 = Experiment(
    name="dsprites64-vae",
    data=DataConfig(name="dsprites_procedural", binarize="none", batch_size=64),
    model=ModelConfig(architecture="conv", conv_channels=(32, 32, 64, 64), hidden_sizes=(256,), latent_size=10),
    train=TrainConfig(epochs=26, learning_rate=1e-4, log_every=1000, capacity_steps=100_000),
)
for _suffix, _changes in _DISENTANGLING.items():
    PRESETS[f"dsprites-{_suffix}"] = override(_DSPRITES_SMALL, {"name": f"dsprites-{_suffix}", **_changes})
for _suffix, _changes in _DISENTANGLING.items():
    PRESETS[f"dsprites64-{_suffix}"] = override(_DSPRITES_64, {"name": f"dsprites64-{_suffix}", **_changes})
DEFAULT_PRESET = "mnist-bernoulli-20d"


def preset(name: str) -> Experiment:
    """The named preset; an unknown name is a `ConfigError` listing the known ones."""
    _require(name in PRESETS, f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]

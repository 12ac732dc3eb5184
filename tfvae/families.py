"""The model families: which config field chooses each, what it cannot be combined with, and what builds it.

One table, `FAMILIES`, plain Python (no TensorFlow), read by `tfvae.config` (each field's choices and the
combination rules) and by `tfvae.model.build` (the builders, in the table's order). A new family is its module
plus one row here.

A builder is named "module:function" (a module of the family layers: nets, priors, hierarchy, flows,
conditioning) and is called as `builder(config, image_shape, parts) -> parts`: `parts` is a dict of what the
families before it built ("encoder", "decoder", "prior"; "num_classes" for a model that takes the class), and
it returns the dict with its own parts put in. The architecture's family builds an encoder and a decoder (two
layers: a prior too), a posterior family replaces the encoder, a prior family adds the prior, and the
conditional family wraps encoder and decoder so that they take the class.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Rule:
    """A combination rule: `field` of the model config must pass `allows`; `needs` says what it must be, in words."""

    field: str
    allows: Callable[[Any], bool]
    needs: str


@dataclasses.dataclass(frozen=True)
class Family:
    """One row of the table: `field` = `value` of `tfvae.config.ModelConfig` chooses this family."""

    name: str
    field: str
    value: Any
    builder: str  # "module:function" in tfvae
    reads: tuple[str, ...] = ()  # the other ModelConfig fields the builder uses
    rules: tuple[Rule, ...] = ()
    reason: str = ""  # why the rules hold, said after them in the error
    reference: str = ""
    factorised_posterior: bool = True  # q(z|x) a diagonal Normal (free bits, beta-TCVAE, DIP-VAE, DReG need it)
    factorised_prior: bool = True  # p(z) a diagonal Normal (free bits needs it)

    def build(self, config, image_shape, parts: dict) -> dict:
        """This family's parts added to `parts` (see the module docstring)."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(f"tfvae.{module}"), function)(config, image_shape, parts)

    def problem(self, config) -> str | None:
        """The first rule `config` breaks, as one sentence, or None."""
        for rule in self.rules:
            if not rule.allows(getattr(config, rule.field)):
                return f"model.{self.field}={_shown(self.value)} {self.reason}: model.{rule.field} {rule.needs} " \
                       f"(got {getattr(config, rule.field)!r})"
        return None


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


_STOCHASTIC_ENCODER = Rule("deterministic_encoder", lambda value: not value, "must be false")
_ONE_LAYER = Rule("architecture", lambda value: value != "two_layer", "must be another architecture than two_layer")

FAMILIES: tuple[Family, ...] = (
    # The architecture: every model has one (encoder and decoder; two layers bring their own prior).
    Family("MLP", "architecture", "mlp", "nets:network_parts",
           reads=("hidden_sizes", "latent_size", "activation", "likelihood", "min_scale", "normal_scale",
                  "deterministic_encoder")),
    Family("convolutional", "architecture", "conv", "nets:network_parts",
           reads=("conv_channels", "hidden_sizes", "latent_size", "activation", "likelihood", "min_scale",
                  "normal_scale", "deterministic_encoder")),
    Family("two stochastic layers", "architecture", "two_layer", "hierarchy:two_layer_parts",
           reads=("hidden_sizes", "latent_size", "top_hidden_sizes", "top_latent_size", "activation", "likelihood",
                  "normal_scale", "min_scale"),
           rules=(Rule("prior", lambda value: value == "normal", "must be normal"), _STOCHASTIC_ENCODER),
           reason="has its own prior p(z1|z2) p(z2) and a stochastic encoder",
           reference="Burda et al., 2015", factorised_posterior=False),
    # The posterior: a diagonal Normal unless a flow replaces the encoder.
    Family("inverse autoregressive flow", "posterior", "iaf", "flows:flow_parts",
           reads=("hidden_sizes", "latent_size", "flow_steps", "activation", "min_scale", "conv_channels"),
           rules=(_STOCHASTIC_ENCODER, _ONE_LAYER),
           reason="is a flow on a stochastic encoder's Normal", reference="Kingma et al., 2016",
           factorised_posterior=False),
    Family("affine coupling flow", "posterior", "coupling", "flows:flow_parts",
           reads=("hidden_sizes", "latent_size", "flow_steps", "activation", "min_scale", "conv_channels"),
           rules=(_STOCHASTIC_ENCODER, _ONE_LAYER,
                  Rule("latent_size", lambda value: isinstance(value, int) and value >= 2, "must be >= 2")),
           reason="is a flow on a stochastic encoder's Normal that splits z in two", reference="Dinh et al., 2017",
           factorised_posterior=False),
    # The prior: N(0, I) unless one of these learns it.
    Family("mixture prior", "prior", "mixture", "priors:mixture_parts", reads=("latent_size", "prior_components"),
           factorised_prior=False),
    Family("VampPrior", "prior", "vamp", "priors:vamp_parts", reads=("prior_components",),
           reference="Tomczak & Welling, 2018", factorised_prior=False),
    # Class conditioning: encoder and decoder also take the class.
    Family("conditional", "conditional", True, "conditioning:conditional_parts", reads=("num_classes",),
           rules=(_ONE_LAYER,), reason="needs a one-layer architecture (the two_layer decoder reads z1 alone, so "
                                        "it would not see the class)", reference="Sohn et al., 2015"),
)

# What each field is when no family of the table chooses it (then nothing is built for it: the Normal
# encoder of the architecture, N(0, I), no class).
DEFAULTS = {"posterior": "normal", "prior": "normal", "conditional": False}


def choices(field: str) -> tuple:
    """The values `field` may take: its default (if any), then every family's, in the table's order."""
    values = [DEFAULTS[field]] if field in DEFAULTS else []
    return tuple(values + [family.value for family in FAMILIES if family.field == field])


def chosen(config) -> list[Family]:
    """The families a `ModelConfig` chooses, in the table's (building) order."""
    return [family for family in FAMILIES if getattr(config, family.field) == family.value]


def factorised_posterior(config) -> bool:
    """Whether the model `config` describes has a diagonal Normal q(z|x) (no family it chooses says otherwise)."""
    return all(family.factorised_posterior for family in chosen(config))


def factorised_prior(config) -> bool:
    """Whether the model `config` describes has a diagonal Normal p(z)."""
    return all(family.factorised_prior for family in chosen(config))


def problem(config) -> str | None:
    """The first combination rule `config` breaks, as one sentence naming the fields, or None."""
    return next((found for family in chosen(config) if (found := family.problem(config))), None)


__all__ = ["DEFAULTS", "FAMILIES", "Family", "Rule", "choices", "chosen", "factorised_posterior", "factorised_prior",
           "problem"]

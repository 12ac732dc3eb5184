"""tfvae: variational autoencoders with TensorFlow 2, Sonnet 2 and TensorFlow Probability.

    import tfvae
    experiment = tfvae.preset("mnist-bernoulli-20d")
    result = tfvae.fit(experiment, "runs/my-first-vae")
    images = result.model.sample(16)          # [16, 28, 28, 1] pixel probabilities
    run = tfvae.open_run("runs/my-first-vae") # experiment, history, model, test images
    numbers = tfvae.evaluate_run("runs/my-first-vae", k=100)  # -log p(x), negative ELBO, ... in nats per image

Losses are in nats per image: the distortion -log p(x|z), the rate KL(q(z|x) || p(z)), and the loss
distortion + beta * rate. The public names are re-exported here (`__all__`; the documentation site's API
reference, docs/api/, lists each with its module). The modules that import TensorFlow are loaded on first use,
so `tfvae --help` and config work stay fast.
"""

from __future__ import annotations

import importlib

from tfvae.config import (
    PRESETS,
    ConfigError,
    DataConfig,
    Experiment,
    ModelConfig,
    TrainConfig,
    override,
    preset,
)

__version__ = "0.2.0"

# public name -> module that defines it. Verbs are functions (fit, evaluate,
# export, open_run); nouns are modules (data, plots, objectives, ...).
_LAZY = {
    "data": "tfvae.data",
    "load": "tfvae.data",
    "from_arrays": "tfvae.data",
    "from_directory": "tfvae.data",
    "ArraySource": "tfvae.data",
    "DataNotFoundError": "tfvae.data",
    "Encoder": "tfvae.nets",
    "Decoder": "tfvae.nets",
    "VAE": "tfvae.model",
    "VAEOutput": "tfvae.model",
    "ConditionalVAE": "tfvae.model",
    "build_model": "tfvae.model",
    "priors": "tfvae.priors",
    "flows": "tfvae.flows",
    "hierarchy": "tfvae.hierarchy",
    "conditioning": "tfvae.conditioning",
    "objectives": "tfvae.objectives",
    "Terms": "tfvae.objectives",
    "negative_elbo": "tfvae.objectives",
    "iwae_bound": "tfvae.objectives",
    "train_step": "tfvae.step",
    "NonFiniteError": "tfvae.step",
    "fit": "tfvae.train",
    "FitResult": "tfvae.train",
    "open_run": "tfvae.rundir",
    "run_dir_for": "tfvae.rundir",
    "Run": "tfvae.rundir",
    "RunDirError": "tfvae.rundir",
    "read_history": "tfvae.rundir",
    "restore_model": "tfvae.rundir",
    "evaluate": "tfvae.evaluation",
    "evaluate_run": "tfvae.evaluation",
    "roc_auc": "tfvae.evaluation",
    "export": "tfvae.savedmodel",
    "plots": "tfvae.plots",
    "evaluation": "tfvae.evaluation",
    "savedmodel": "tfvae.savedmodel",
    "rundir": "tfvae.rundir",
    "step": "tfvae.step",
    "runners": "tfvae.runners",
    "TensorBoardLogger": "tfvae.tensorboard",
    "devices": "tfvae.devices",
    "distribute": "tfvae.distribute",
    "precision": "tfvae.precision",
    "sweep": "tfvae.sweep",
    "tensorboard": "tfvae.tensorboard",
    "factors": "tfvae.factors",
    "FactorDataset": "tfvae.factors",
    "load_factor_dataset": "tfvae.factors",
    "disentanglement": "tfvae.disentanglement",
    "features": "tfvae.features",
    "sample_quality": "tfvae.sample_quality",
    "inception": "tfvae.inception",
    "frechet_distance": "tfvae.sample_quality",
    "feature_statistics": "tfvae.sample_quality",
    "classifier_frechet_distance": "tfvae.sample_quality",
    "precision_recall": "tfvae.sample_quality",
    "frechet_inception_distance": "tfvae.inception",
    "disentangling": "tfvae.disentangling",
    "factor_evaluation": "tfvae.factor_evaluation",
    "evaluate_disentanglement": "tfvae.factor_evaluation",
    "samplers": "tfvae.samplers",
    "run_samplers": "tfvae.run_samplers",
}
_RENAMED = {"build_model": "build"}

__all__ = [
    "PRESETS",
    "ConfigError",
    "DataConfig",
    "Experiment",
    "ModelConfig",
    "TrainConfig",
    "override",
    "preset",
    *_LAZY,
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'tfvae' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__.endswith("." + name) else getattr(module, _RENAMED.get(name, name))
    globals()[name] = value
    return value

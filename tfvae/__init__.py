"""tfvae: variational autoencoders with TensorFlow 2, Sonnet 2 and TensorFlow Probability.

    import tfvae
    experiment = tfvae.preset("mnist-bernoulli-20d")
    result = tfvae.fit(experiment, "runs/my-first-vae")
    images = result.model.sample(16)          # [16, 28, 28, 1] pixel probabilities

The public names are re-exported here. The modules that import TensorFlow
are loaded on first use, so `tfvae --help` and config work stay fast.
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

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "data": "tfvae.data",
    "load": "tfvae.data",
    "from_arrays": "tfvae.data",
    "from_directory": "tfvae.data",
    "DataNotFoundError": "tfvae.data",
    "Encoder": "tfvae.nets",
    "Decoder": "tfvae.nets",
    "VAE": "tfvae.model",
    "VAEOutput": "tfvae.model",
    "build_model": "tfvae.model",
    "Terms": "tfvae.objectives",
    "negative_elbo": "tfvae.objectives",
    "fit": "tfvae.train",
    "FitResult": "tfvae.train",
    "RunDirError": "tfvae.train",
    "read_history": "tfvae.train",
    "restore_model": "tfvae.train",
    "plots": "tfvae.plots",
    "evaluate": "tfvae.evaluate",
    "iwae_bound": "tfvae.objectives",
    "training_terms": "tfvae.objectives",
    "kl_weight": "tfvae.objectives",
    "NonFiniteError": "tfvae.train",
    "export": "tfvae.export",
    "tensorboard": "tfvae.tensorboard",
    "TensorBoardLogger": "tfvae.tensorboard",
    "devices": "tfvae.devices",
    "distribute": "tfvae.distribute",
    "precision": "tfvae.precision",
    "sweep": "tfvae.sweep",
    "roc_auc": "tfvae.evaluate",
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

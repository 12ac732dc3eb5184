"""benchmarks/early_collapse.py: the epoch a run leaves the mean-image plateau, and its variants' settings."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tfvae
from tfvae import model as model_lib

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("early_collapse", ROOT / "benchmarks" / "early_collapse.py")
early_collapse = sys.modules["early_collapse"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(early_collapse)


def test_the_escape_epoch_is_the_first_whose_kl_passes_the_threshold():
    # Rows out of order; epoch 2's KL equals the threshold (not past it); epoch 3's passes it.
    history = pd.DataFrame({"epoch": [4.0, 1.0, 3.0, 2.0], "train_rate": [20.0, 0.7, 5.5, 5.0]})
    assert early_collapse.escape_epoch(history, 5.0) == 3
    # The VampPrior seed-2 history: KL near 0 throughout.
    stuck = pd.DataFrame({"epoch": [1.0, 2.0, 3.0], "train_rate": [0.76, 0.03, 0.007]})
    assert early_collapse.escape_epoch(stuck, 5.0) is None


def test_a_variant_is_config_changes_with_json_values():
    assert early_collapse.parse_variant("") == {}
    assert early_collapse.parse_variant('train.learning_rate=0.0005 model.prior="vamp"') == {
        "train.learning_rate": 0.0005, "model.prior": "vamp"}
    assert early_collapse.parse_variant("model.activation=relu") == {"model.activation": "relu"}
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        early_collapse.parse_variant("train.learning_rate")


def test_the_code_spread_is_zero_for_an_encoder_that_ignores_its_input_and_not_otherwise():
    experiment = tfvae.override(tfvae.preset("mnist-burda-vae"), {"model.hidden_sizes": [8], "model.latent_size": 3})
    model = model_lib.build(experiment.model, (4, 4, 1))
    images = (np.random.default_rng(0).random((50, 4, 4, 1)) < 0.5).astype("float32")
    assert early_collapse.code_spread(model, images) > 1e-3
    assert early_collapse.code_spread(model, np.repeat(images[:1], 50, axis=0)) < 1e-6

"""Mixed precision: low-precision layers, float32 weights, terms and gradients; a bfloat16 run trains."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfvae import config, model, precision, rundir, train
from tfvae import step as step_lib
from test_train import IMAGE_SHAPE, datasets, prototype_images, tiny_experiment


def small_vae(architecture="mlp"):
    tf.random.set_seed(0)
    vae = model.build(config.ModelConfig(hidden_sizes=(16,), latent_size=2, architecture=architecture,
                                         conv_channels=(4,)), IMAGE_SHAPE)
    vae(tf.zeros([1, *IMAGE_SHAPE]))
    return vae


def test_precision_is_validated():
    with pytest.raises(config.ConfigError, match="train.precision must be one of float32, mixed_float16, mixed_bf"):
        config.TrainConfig(precision="float16")
    assert config.TrainConfig().precision == "float32"


def loss_and_gradients(vae, images, settings, seed):
    """The training terms (a list of 3) and gradients of `settings`'s loss at step 0."""
    loss = step_lib.training_loss(settings)
    terms, gradients, _ = step_lib.loss_and_gradients(vae, images, seed, loss, 0, settings.precision)
    return tf.unstack(terms), gradients


@pytest.mark.parametrize("name, dtype", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
@pytest.mark.parametrize("architecture, op", [("mlp", "MatMul"), ("conv", "Conv2D")])
def test_layers_compute_in_low_precision_and_everything_else_is_float32(name, dtype, architecture, op):
    vae = small_vae(architecture)
    settings = config.TrainConfig(precision=name)
    images = tf.constant(prototype_images(16))
    step = tf.function(lambda x: loss_and_gradients(vae, x, settings, tf.constant([1, 2])))
    graph = step.get_concrete_function(images).graph
    assert {o.get_attr("T").name for o in graph.get_operations() if o.type == op} == {dtype}
    terms, gradients = step(images)
    assert [t.dtype for t in terms] == [tf.float32] * 3
    assert {v.dtype for v in vae.trainable_variables} == {g.dtype for g in gradients} == {tf.float32}
    # The same numbers as float32 up to the low precision's rounding (bfloat16 keeps 8 bits).
    seed = tf.constant([1, 2])
    reference, reference_gradients = loss_and_gradients(vae, images, config.TrainConfig(), seed)
    np.testing.assert_allclose([float(t) for t in terms], [float(t) for t in reference], rtol=0.02, atol=0.05)
    for low, full in zip(gradients, reference_gradients):
        assert np.abs(low - full).max() <= 0.05 * np.abs(full).max() + 1e-6
    # Outside training the model is float32 again.
    assert precision.compute_dtype() == tf.float32
    assert vae.encode(images).mean().dtype == tf.float32


def test_float16_gradients_are_unscaled():
    # Taken of 128 * loss and divided back: the same size as float32 gradients, not 128 times larger.
    vae = small_vae()
    images = tf.constant(prototype_images(16))
    seed = tf.constant([1, 2])
    _, low = loss_and_gradients(vae, images, config.TrainConfig(precision="mixed_float16"), seed)
    _, full = loss_and_gradients(vae, images, config.TrainConfig(), seed)
    ratios = [float(tf.norm(a) / tf.norm(b)) for a, b in zip(low, full)]
    np.testing.assert_allclose(ratios, 1.0, rtol=0.02)


def bfloat16_experiment(precision: str, epochs: int = 4) -> config.Experiment:
    return config.override(tiny_experiment(epochs=epochs), {"train.precision": precision, "train.learning_rate": 1e-2})


def fit(experiment, run_dir):
    train_data, test_data = datasets(experiment)
    return train.fit(experiment, run_dir, train_data=train_data, test_data=test_data, progress=False)


@pytest.fixture(scope="module")
def float32_run(tmp_path_factory):
    return fit(bfloat16_experiment("float32"), tmp_path_factory.mktemp("precision") / "float32")


def test_a_mixed_bfloat16_run_trains_on_the_cpu_and_follows_the_float32_run(float32_run, tmp_path):
    result = fit(bfloat16_experiment("mixed_bfloat16"), tmp_path / "bfloat16")
    history = result.history
    assert np.isfinite(history[["train_loss", "train_distortion", "train_rate"]].to_numpy()).all()
    losses = history["train_loss"].to_numpy()  # 12 rows over 20 steps, nats per 8x8 image
    assert losses[-1] < losses[0] - 5  # measured: 45.05 -> 38.22
    # README: "follows the float32 loss curve to 0.06 nats" (measured at most 0.006 at any row, train or test).
    np.testing.assert_allclose(losses, float32_run.history["train_loss"], rtol=0, atol=0.06)
    np.testing.assert_allclose(history["test_loss"].dropna(), float32_run.history["test_loss"].dropna(), rtol=0,
                               atol=0.06)
    assert {v.dtype for v in result.model.variables} == {tf.float32}


def test_a_float32_run_continues_in_mixed_bfloat16(float32_run, tmp_path):
    # Half the run in float32, the rest in mixed_bfloat16 from its checkpoint (train.precision may change
    # on resume): the float32 half is the float32 run's, the rest follows it to bfloat16's 0.06 nats.
    fit(bfloat16_experiment("float32", epochs=2), tmp_path / "run")
    resumed = fit(bfloat16_experiment("mixed_bfloat16"), tmp_path / "run").history
    whole = float32_run.history
    assert resumed["step"].tolist() == whole["step"].tolist()
    first_half = resumed["epoch"] <= 2
    assert first_half.sum() == 6 and resumed["epoch"].max() == 4
    pd.testing.assert_frame_equal(resumed[first_half].drop(columns="wall_time"),
                                  whole[first_half].drop(columns="wall_time"))
    np.testing.assert_allclose(resumed["train_loss"], whole["train_loss"], rtol=0, atol=0.06)
    assert not np.array_equal(resumed["train_loss"][~first_half], whole["train_loss"][~first_half])  # bfloat16 ran
    assert rundir.load_experiment(tmp_path / "run").train.precision == "mixed_bfloat16"

"""fit trains any model a user builds; the run reads back, resumes, evaluates, draws and exports with it."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae
from tfvae import model, nets, plots, rundir
from test_train import IMAGE_SHAPE, datasets, tiny_experiment

tfd = tfp.distributions


class ResidualEncoder(snt.Module):
    """A user's encoder, unknown to tfvae: a residual MLP torso and a diagonal Normal over z."""

    def __init__(self, latent_size: int = 2, width: int = 16):
        super().__init__(name="residual_encoder")
        self.latent_size = latent_size
        self.inner = snt.Linear(width)
        self.skip = snt.Linear(width)
        self.head = snt.Linear(2 * latent_size)

    def __call__(self, images: tf.Tensor) -> tfd.Distribution:
        flat = snt.Flatten()(images)
        hidden = tf.nn.relu(self.skip(flat)) + tf.nn.relu(self.inner(tf.nn.relu(self.skip(flat))))
        loc, raw_scale = tf.split(self.head(hidden), 2, axis=-1)
        return tfd.Independent(tfd.Normal(loc, 1e-3 + tf.nn.softplus(raw_scale)), 1)


def custom_vae(seed: int = 0) -> model.VAE:
    tf.random.set_seed(seed)
    return model.VAE(ResidualEncoder(), nets.Decoder([16], IMAGE_SHAPE))


def fit(run_dir, epochs: int = 3, seed: int = 0, hooks=()):
    experiment = tfvae.override(tiny_experiment(epochs), {"train.learning_rate": 1e-2})
    train_data, test_data = datasets(experiment)
    return tfvae.fit(experiment, run_dir, model=custom_vae(seed), train_data=train_data, test_data=test_data,
                     hooks=hooks, progress=False)


def test_fit_trains_a_model_built_from_a_users_own_encoder(tmp_path):
    result = fit(tmp_path / "run", epochs=8)
    assert isinstance(result.model.encoder, ResidualEncoder)
    losses = result.history["train_loss"].to_numpy()  # (the test images are of other prototypes)
    assert losses[-1] < losses[0] - 5  # it learns: 8x8 binary images, nats per image
    saved = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints" / "ckpt-40")).get_variable_to_shape_map()
    assert any("encoder/skip" in name for name in saved)  # the user's weights are in the checkpoint


def test_a_stopped_run_of_a_custom_model_resumes_to_the_uninterrupted_result(tmp_path):
    whole = fit(tmp_path / "whole")

    def stop_at_step_7(step, model, row):
        if step >= 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "split", hooks=[stop_at_step_7])
    resumed = fit(tmp_path / "split", seed=5)  # the same model class again, other initial weights: restored over
    for a, b in zip(whole.model.variables, resumed.model.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole.history["train_loss"], resumed.history["train_loss"], rtol=1e-5)


def test_the_run_of_a_custom_model_opens_evaluates_draws_and_exports_with_it(tmp_path):
    trained = fit(tmp_path / "run").model
    with pytest.raises(rundir.RunDirError, match="built in Python .*ResidualEncoder|built in Python .*VAE"):
        tfvae.open_run(tmp_path / "run").model
    run = tfvae.open_run(tmp_path / "run", model=custom_vae(seed=9))
    for a, b in zip(trained.variables, run.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    images = datasets(run.experiment)[1]
    numbers = tfvae.evaluate(run.model, images, k=20)
    assert numbers["nll"] <= numbers["negative_elbo"] + 0.5 and numbers["active_units"] >= 0
    # (figures of the decoder alone: the run's config names MNIST, but it trained on 8x8 images)
    written = plots.draw_run(tmp_path / "run", figures=["prior_samples", "latent_grid"], model=custom_vae())
    assert [p.name for p in written] == ["prior_samples.png", "latent_grid.png"]
    exported = tf.saved_model.load(str(tfvae.export(run.model, tmp_path / "export", image_shape=IMAGE_SHAPE)))
    z = exported.encode(tf.zeros([2, *IMAGE_SHAPE]))["mean"]
    # The SavedModel's graph may fuse ops that eager code runs one by one: a few float32 roundings (6e-8) of terms
    # of size ~1, and the means of a blank image can be near 0: rtol 1e-5, atol 1e-6.
    np.testing.assert_allclose(z, run.model.encode(tf.zeros([2, *IMAGE_SHAPE])).mean(), rtol=1e-5, atol=1e-6)


def test_a_run_refuses_another_kind_of_model(tmp_path):
    fit(tmp_path / "run", epochs=1)
    experiment = tfvae.override(tiny_experiment(2), {"train.learning_rate": 1e-2})
    train_data, test_data = datasets(experiment)
    with pytest.raises(rundir.RunDirError, match="would mix two models"):
        tfvae.fit(experiment, tmp_path / "run", train_data=train_data, test_data=test_data, progress=False)
    with pytest.raises(ValueError, match=r"needs a model with encode, decode, prior \(a property\) and latent_size"):
        tfvae.fit(experiment, tmp_path / "other", model=ResidualEncoder(), train_data=train_data, test_data=test_data,
                  progress=False)

"""The model protocol (tfvae.protocol): a model written from plain Sonnet and TFP, with no tfvae part, is
trained, resumed bit for bit, evaluated, drawn and exported, and mirrored over two logical CPUs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae
from tfvae import plots, protocol
from test_train import IMAGE_SHAPE, datasets, tiny_experiment

tfd = tfp.distributions

# The whole user model, as a user writes it: nothing from tfvae. (Also run in a subprocess below.)
PLAIN_MODEL = '''
class PlainModel(snt.Module):
    """q(z|x) a diagonal Normal from an MLP, p(x|z) Bernoulli pixels from an MLP, p(z) = N(0, I)."""

    def __init__(self, latent_size=2, image_shape=(8, 8, 1)):
        super().__init__(name="plain_model")
        self.latent_size, self.image_shape = latent_size, tuple(image_shape)
        self.encoder = snt.nets.MLP([16, 2 * latent_size])
        self.decoder = snt.nets.MLP([16, int(np.prod(image_shape))])

    @property
    def prior(self):
        return tfd.Independent(tfd.Normal(tf.zeros([self.latent_size]), 1.0), 1)

    def encode(self, images):
        loc, raw = tf.split(self.encoder(snt.Flatten()(images)), 2, axis=-1)
        return tfd.Independent(tfd.Normal(loc, 1e-3 + tf.nn.softplus(raw)), 1)

    def decode(self, z):  # z [..., latent]: any leading sample axes
        logits = snt.BatchApply(self.decoder, num_dims=z.shape.rank - 1)(z)
        shape = tf.concat([tf.shape(z)[:-1], self.image_shape], axis=0)
        return tfd.Independent(tfd.Bernoulli(logits=tf.reshape(logits, shape), dtype=tf.float32), 3)
'''
exec(PLAIN_MODEL)  # defines PlainModel here  # noqa: S102


def fit(run_dir, epochs=3, hooks=(), **changes):
    experiment = tfvae.override(tiny_experiment(epochs), {"train.learning_rate": 1e-2, "train.deterministic": True,
                                                           **changes})  # fmt: skip
    train_data, test_data = datasets(experiment)
    return tfvae.fit(experiment, run_dir, model=PlainModel, train_data=train_data, test_data=test_data,
                     hooks=hooks, progress=False)


def test_the_protocol_is_checked_once_at_the_door_naming_what_is_missing():
    assert protocol.is_model(PlainModel()) and isinstance(PlainModel(), protocol.GenerativeModel)

    class MethodPrior(PlainModel):
        def prior(self):  # a method, not a property
            return super().prior

    class NoDecoder(snt.Module):
        latent_size = 2

        def encode(self, images):
            return None

    assert protocol.problems(MethodPrior()) == [
        "prior is a method: make it a property (@property) that returns the tfd.Distribution"]
    assert protocol.problems(NoDecoder()) == ["it has no decode, prior"]
    experiment = tiny_experiment(1)
    for bad, message in ((MethodPrior(), "MethodPrior: prior is a method"), (NoDecoder(), "NoDecoder: it has no "
                         "decode, prior"), (object(), "object: it is not a snt.Module; it has no encode")):  # fmt: skip
        with pytest.raises(ValueError, match=r"^fit\(model=...\) needs a model with encode, decode, prior \(a "
                                             r"property\) and latent_size that is a snt.Module; " + message):
            tfvae.fit(experiment, "unused", model=bad, train_data=datasets(experiment)[0], progress=False)
    with pytest.raises(ValueError, match=r"^evaluate needs a model .*NoDecoder: it has no decode, prior"):
        tfvae.evaluate(NoDecoder(), np.zeros([2, *IMAGE_SHAPE], np.float32), k=2)


def test_a_plain_sonnet_model_trains_and_resumes_bit_for_bit(tmp_path):
    whole = fit(tmp_path / "whole")
    assert isinstance(whole.model, PlainModel)
    losses = whole.history["train_loss"].to_numpy()
    assert losses[-1] < losses[0] - 5  # it learns (nats per 8 x 8 binary image)

    def stop_at_step_7(step, model, row):
        if step >= 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "split", hooks=[stop_at_step_7])
    resumed = fit(tmp_path / "split")
    for a, b in zip(whole.model.variables, resumed.model.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # same ops, same inputs, op determinism: equal
    np.testing.assert_array_equal(whole.history["train_loss"], resumed.history["train_loss"])


def test_a_plain_sonnet_model_is_evaluated_drawn_and_exported(tmp_path):
    trained = fit(tmp_path / "run").model
    run = tfvae.open_run(tmp_path / "run", model=PlainModel())
    for a, b in zip(trained.variables, run.model.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    images = datasets(run.experiment)[1]
    numbers = tfvae.evaluate(run.model, images, k=50)
    assert 0 <= numbers["negative_elbo"] - numbers["nll"] < 5 and np.isfinite(numbers["nll"])
    written = plots.draw_run(tmp_path / "run", figures=["prior_samples", "latent_grid"], model=PlainModel())
    assert [path.name for path in written] == ["prior_samples.png", "latent_grid.png"]
    batch = next(iter(images))
    np.testing.assert_array_equal(protocol.reconstruct(run.model, batch),  # derived: the model has no reconstruct
                                  run.model.decode(run.model.encode(batch).mean()).mean())
    grid = plots.reconstruction_grid(run.model, batch)
    assert np.all((grid >= 0) & (grid <= 1)) and grid.size > 2 * batch.numpy().size
    exported = tf.saved_model.load(str(tfvae.export(run.model, tmp_path / "export", image_shape=IMAGE_SHAPE)))
    z = tf.constant([[0.5, -1.0]])
    np.testing.assert_allclose(exported.decode(z)["mean"], run.model.decode(z).mean(), rtol=1e-6, atol=1e-7)


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np, sonnet as snt, tensorflow_probability as tfp
    tfd = tfp.distributions
    sys.path.insert(0, sys.argv[2])
    import tfvae
    from test_train import datasets, tiny_experiment
    """
) + PLAIN_MODEL + textwrap.dedent(
    """
    out = {}
    for distribute in ("default", "mirrored"):
        experiment = tfvae.override(tiny_experiment(2), {"train.learning_rate": 1e-2, "train.distribute": distribute})
        train_data, test_data = datasets(experiment)
        result = tfvae.fit(experiment, f"{sys.argv[1]}/{distribute}", model=PlainModel, train_data=train_data,
                           test_data=test_data, progress=False)
        out[distribute] = {"kind": type(result.model.variables[0]).__name__,
                           "train_loss": result.history["train_loss"].tolist()}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_a_plain_sonnet_model_is_mirrored_over_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    done = subprocess.run([sys.executable, str(script), str(tmp_path), os.path.dirname(__file__)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["mirrored"]["kind"] == "MirroredVariable" and runs["default"]["kind"] == "ResourceVariable"
    # The draws of z differ between one device and two (each replica draws its own), so the curves agree
    # only in what they learn: both finite, both well below the start.
    for run in runs.values():
        assert np.all(np.isfinite(run["train_loss"])) and run["train_loss"][-1] < run["train_loss"][0] - 3

"""Evaluation against an exact answer: a linear Gaussian model whose log p(x) has a closed form.

    p(z) = N(0, I_d),   p(x|z) = N(W z + b, s^2 I_D)   =>   p(x) = N(b, W W^T + s^2 I_D)

With W = Q diag(sigma) (orthonormal columns Q) the exact posterior is a
diagonal Normal: precision 1 + sigma^2 / s^2 per dimension, mean
cov W^T (x - b) / s^2. The encoder and decoder below are small Sonnet modules
plugged into `tfvae.VAE`, so the same objective and evaluation code runs as
for a trained network.
"""

import json

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

from tfvae import cli, config, data, evaluation, model, objectives, rundir, train

tfd = tfp.distributions

IMAGE_SHAPE = (2, 3, 1)  # D = 6 "pixels"
D, LATENT = 6, 2
NOISE_SCALE = 0.5


def linear_gaussian(sigma=(2.0, 0.7), seed=0):
    """W [D, d], b [D] and s of a linear Gaussian model with orthogonal columns."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, LATENT)))
    return (q * np.asarray(sigma)).astype(np.float32), rng.normal(size=D).astype(np.float32), NOISE_SCALE


class LinearGaussianDecoder(snt.Module):
    def __init__(self, w, b, s):
        super().__init__()
        self.w, self.b, self.s = tf.constant(w), tf.constant(b), s

    def __call__(self, z):
        loc = tf.einsum("...j,ij->...i", z, self.w) + self.b
        loc = tf.reshape(loc, tf.concat([tf.shape(z)[:-1], IMAGE_SHAPE], axis=0))
        return tfd.Independent(tfd.Normal(loc, self.s), reinterpreted_batch_ndims=3)


class PosteriorEncoder(snt.Module):
    """The exact posterior, optionally made imperfect: mean shifted by `shift` stds, std times `stretch`."""

    def __init__(self, w, b, s, shift=0.0, stretch=1.0):
        super().__init__()
        self.latent_size = LATENT
        precision = 1 + np.sum(w**2, axis=0) / s**2
        self.scale = tf.constant(stretch / np.sqrt(precision), tf.float32)
        self.projection = tf.constant(w / (s**2 * precision), tf.float32)  # [D, d]
        self.b, self.shift = tf.constant(b), shift / np.sqrt(precision).astype(np.float32)

    def __call__(self, images):
        x = tf.reshape(images, [-1, D])
        loc = (x - self.b) @ self.projection + self.shift
        return tfd.Independent(tfd.Normal(loc, tf.broadcast_to(self.scale, tf.shape(loc))), 1)


def exact_log_px(x, w, b, s):
    return stats.multivariate_normal(b, w @ w.T + s**2 * np.eye(D)).logpdf(x.reshape(len(x), D))


@pytest.fixture(scope="module")
def problem():
    w, b, s = linear_gaussian()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, LATENT)) @ w.T + b + s * rng.normal(size=(40, D))
    images = x.reshape(40, *IMAGE_SHAPE).astype(np.float32)
    return w, b, s, images, exact_log_px(images, w, b, s)


def vae_for(problem, **imperfection):
    w, b, s, *_ = problem
    return model.VAE(PosteriorEncoder(w, b, s, **imperfection), LinearGaussianDecoder(w, b, s))


def dataset(images, batch_size=16):
    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size)


def test_log_px_is_exact_with_the_exact_posterior(problem):
    # With q(z|x) = p(z|x) every importance weight is p(x) itself, so the estimate is exact up to float32
    # rounding of ~10-nat sums: measured at most 2.3e-6 nats per image and 1.5e-6 for the mean.
    *_, images, exact = problem
    result = evaluation.evaluate(vae_for(problem), dataset(images), k=50, chunk=7, per_example=True)
    assert np.max(np.abs(np.array(result["log_px"]) - exact)) < 1e-5
    assert abs(result["nll"] + exact.mean()) < 1e-5
    # k = 50 in chunks of 7: 8 chunks, 56 draws, 6 past k. Counted, they would add log(56/50) = 0.11 nats.
    assert result["chunk"] == 7 and 8 * 7 > 50
    assert abs(result["iwae_gap"]) < 0.01  # the ELBO is tight too (its reconstruction is a 50-draw mean)


def test_draws_past_k_in_the_last_chunk_do_not_count(problem):
    # k = 7 in chunks of 4: 2 chunks, 8 draws, 1 past k; counted, it would add log(8/7) = 0.134 nats.
    *_, images, exact = problem
    result = evaluation.evaluate(vae_for(problem), dataset(images), k=7, chunk=4, per_example=True)
    assert result["chunk"] == 4 and np.max(np.abs(np.array(result["log_px"]) - exact)) < 1e-5


def test_log_px_with_an_imperfect_encoder_and_many_samples_approaches_the_exact_value(problem):
    *_, images, exact = problem
    # k = 5000 asked in chunks of 1200 runs as 5 equal chunks of 1000: no draw is wasted.
    result = evaluation.evaluate(vae_for(problem, shift=0.2, stretch=1.1), dataset(images), k=5000, chunk=1200,
                               per_example=True)
    assert result["chunk"] == 1000
    errors = np.array(result["log_px"]) - exact
    # Monte Carlo error: sd 0.004 nats per image here (0.008 with shift 0.5, stretch 1.3).
    assert np.max(np.abs(errors)) < 0.02 and abs(errors.mean()) < 0.005
    assert result["iwae_gap"] > 0.05  # while the ELBO is visibly loose


def test_elbo_below_iwae_below_log_px_and_the_gap_shrinks_with_k(problem):
    *_, images, exact = problem
    vae = vae_for(problem, shift=1.0, stretch=1.6)
    repeats = 200  # every bound drawn 200 times per image
    tiled = tf.constant(np.tile(images, (repeats, 1, 1, 1)))

    def gap(bounds):  # mean of log p(x) - bound, and its standard error
        gaps = exact[None, :] - bounds.reshape(repeats, len(exact))
        return gaps.mean(), gaps.std() / np.sqrt(gaps.size)

    elbo_gap, elbo_error = gap(-objectives.negative_elbo(vae, tiled, seed=tf.constant([0, 0])).loss.numpy())
    iwae = {k: objectives.iwae_bound(vae, tiled, k, seed=tf.constant([k, 0])).numpy() for k in (1, 5, 50)}
    gaps, errors = zip(*(gap(bounds) for bounds in iwae.values()))
    # IWAE_1 is the ELBO (in expectation: the ELBO here uses the analytic KL).
    assert abs(gaps[0] - elbo_gap) < 4 * np.hypot(errors[0], elbo_error)
    # ELBO <= IWAE_1 <= IWAE_5 <= IWAE_50 <= log p(x), each step well beyond the noise.
    assert gaps[0] - gaps[1] > 4 * np.hypot(errors[0], errors[1])
    assert gaps[1] - gaps[2] > 4 * np.hypot(errors[1], errors[2])
    assert gaps[2] > 4 * errors[2]
    assert elbo_gap > 1.0 and gaps[2] < 0.5 * gaps[0]


def test_kl_per_dimension_and_active_units(problem):
    w, b, s, images, _ = problem
    w_one = w.copy()
    w_one[:, 1] = 0  # the second latent dimension does not reach x: its posterior is the prior
    vae = model.VAE(PosteriorEncoder(w_one, b, s), LinearGaussianDecoder(w_one, b, s))
    result = evaluation.evaluate(vae, dataset(images), k=10)
    assert result["active_units"] == 1
    assert result["kl_per_dimension"][1] == pytest.approx(0.0, abs=1e-5)
    assert sum(result["kl_per_dimension"]) == pytest.approx(result["rate"], rel=1e-4)
    assert result["posterior_mean_variance"][0] > 0.01 > result["posterior_mean_variance"][1]
    assert result["num_examples"] == 40 and result["k"] == 10
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (D * np.log(2)))


def test_results_are_repeatable_and_chunking_only_changes_the_draws(problem):
    *_, images, _ = problem
    vae = vae_for(problem, shift=0.5, stretch=1.3)
    first = evaluation.evaluate(vae, dataset(images), k=300, chunk=64, seed=3)
    again = evaluation.evaluate(vae, dataset(images), k=300, chunk=64, seed=3)
    other = evaluation.evaluate(vae, dataset(images), k=300, chunk=300, seed=3)
    assert first["nll"] == again["nll"]
    assert first["chunk"] == 60  # 5 equal chunks instead of 64 * 4 + 44
    assert abs(first["nll"] - other["nll"]) < 0.02


def test_evaluating_many_new_models_logs_no_retracing_warning(caplog):
    """A sweep evaluates one model after another; each compiles its own loop (its variables built on the first
    call) and TF's "retracing" warning, meant for a function made again by mistake, stays quiet."""
    images = tf.cast(tf.random.stateless_uniform([8, 6, 6, 1], seed=[3, 4]) > 0.5, tf.float32)
    for _ in range(6):
        fresh = model.build(config.ModelConfig(hidden_sizes=(16,), latent_size=4), (6, 6, 1))
        results = evaluation.evaluate(fresh, tf.data.Dataset.from_tensor_slices(images).batch(4), k=3,
                                      progress=False)
        assert results["num_examples"] == 8 and np.isfinite(results["nll"])
    assert not [record.getMessage() for record in caplog.records if "retracing" in record.getMessage()]


def test_bad_arguments_are_refused(problem):
    *_, images, _ = problem
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        evaluation.evaluate(vae_for(problem), dataset(images), k=0)
    with pytest.raises(ValueError, match="chunk must be a positive integer, got 0"):
        evaluation.evaluate(vae_for(problem), dataset(images), k=5, chunk=0)


def test_dynamically_binarized_test_set_is_one_fixed_draw(mnist_data_dir):
    experiment = config.override(config.preset("tiny"), {"data.data_dir": mnist_data_dir, "data.binarize": "dynamic"})
    first = np.concatenate(list(evaluation.fixed_test_set(experiment, batch_size=16).as_dataset().as_numpy_iterator()))
    dataset_ = evaluation.fixed_test_set(experiment, batch_size=16).as_dataset()
    again = np.concatenate(list(dataset_.as_numpy_iterator()))
    second_pass = np.concatenate(list(dataset_.as_numpy_iterator()))
    assert first.shape == (40, 28, 28, 1) and set(np.unique(first)) <= {0.0, 1.0}
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, second_pass)
    grey_experiment = config.override(experiment, {"data.binarize": "none"})
    grey = np.concatenate(list(evaluation.fixed_test_set(grey_experiment).as_dataset().as_numpy_iterator()))
    assert abs(first.mean() - grey.mean()) < 0.01  # a Bernoulli draw of each pixel's intensity
    assert "default_rng(0)" in evaluation.describe_test_set(experiment)
    np.testing.assert_array_equal(evaluation.fixed_test_set(experiment, limit=5).as_dataset().as_numpy_iterator().next(), first[:5])


# tiny_run (conftest.py): a tiny run with dynamically binarized training images and 3 latent dimensions.
def test_evaluate_command_writes_eval_json(tiny_run, capsys):
    status = cli.main(["evaluate", str(tiny_run), "--k", "20", "--chunk", "8", "--batch-size", "16", "--no-progress"])
    assert status == 0
    assert "-log p(x)" in capsys.readouterr().out
    results = json.loads((tiny_run / "eval.json").read_text())
    assert results["k"] == 20 and results["num_examples"] == 40 and results["checkpoint"].startswith("ckpt-")
    assert results["negative_elbo"] >= results["nll"] - 1.0  # the bound, up to noise from k = 20
    assert len(results["kl_per_dimension"]) == 3 and "default_rng" in results["test_set"]
    # The fixture's pixels are uniform noise, so a fair coin per pixel (543.4 nats) is the best there is.
    assert 784 * np.log(2) - 1 < results["nll"] < 784 * np.log(2) + 20


def test_evaluate_command_errors_are_one_line(tmp_path, capsys):
    status = cli.main(["evaluate", str(tmp_path / "nothing-here")])
    error = capsys.readouterr().err.strip()
    assert status == 2 and error.startswith("tfvae: error:") and "config.json" in error and len(error.splitlines()) == 1


def test_a_validation_split_trains_on_the_first_training_images_and_scores_the_last_never_the_test_split(
        mnist_data_dir, tmp_path, monkeypatch):
    experiment = config.override(config.preset("tiny"), {"data.data_dir": mnist_data_dir, "data.validation": 50})
    all_train = data.load_arrays("mnist", "train", mnist_data_dir)[0]  # the fixture's 200 training images
    read = []
    load_arrays = data.load_arrays
    monkeypatch.setattr(data, "load_arrays", lambda name, split, *a, **kw: read.append(split) or
                        load_arrays(name, split, *a, **kw))

    assert rundir.load_split(experiment, "train").num_examples == 150
    held_out = np.concatenate(list(evaluation.fixed_test_set(experiment, batch_size=16)))
    np.testing.assert_array_equal(held_out, (all_train[-50:] / 255 >= 0.5).astype(np.float32))  # "threshold"
    result = train.fit(experiment, tmp_path / "run", progress=False)
    assert result.history["step"].max() == 5  # 150 images in batches of 32: 5 steps an epoch
    scores = evaluation.evaluate_run(tmp_path / "run", k=3, progress=False)
    assert scores["num_examples"] == 50 and "validation images (train[-50:])" in scores["test_set"]
    assert set(read) == {"train[:-50]", "train[-50:]"}  # the test split was never read
    with pytest.raises(config.ConfigError, match="data.validation"):
        config.override(experiment, {"data.validation": -1})

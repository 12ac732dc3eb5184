"""The objective: its terms against independent computations."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import dataclasses

from tfvae import config, evaluation, model, objectives
from tfvae import step as step_lib

tfd = tfp.distributions


def training_terms(vae, images, settings, weight, seed):
    """The batch-mean terms `fit` trains `settings` on, with the KL weight `weight` (a constant schedule)."""
    return step_lib.training_loss(dataclasses.replace(settings, beta=float(weight)))(vae, images, seed, 0)


@pytest.fixture(scope="module")
def vae():
    tf.random.set_seed(1)
    return model.build(config.ModelConfig(hidden_sizes=(16,), latent_size=4), (6, 6, 1))


@pytest.fixture(scope="module")
def images():
    return tf.cast(tf.random.stateless_uniform([8, 6, 6, 1], seed=[3, 4]) > 0.5, tf.float32)


def test_analytic_kl_matches_monte_carlo(vae, images):
    posterior = vae.encode(images)
    analytic = objectives.kl_divergence(posterior, vae.prior, None).numpy()
    z = posterior.sample(200_000, seed=tf.constant([5, 6]))
    log_ratio = (posterior.log_prob(z) - vae.prior.log_prob(z)).numpy()  # [n, batch]
    monte_carlo = log_ratio.mean(axis=0)
    standard_error = log_ratio.std(axis=0) / np.sqrt(len(log_ratio))
    assert np.all(np.abs(monte_carlo - analytic) < 4 * standard_error + 1e-3)


def test_kl_matches_closed_form_for_diagonal_gaussians():
    loc, scale = np.array([[0.5, -1.0]]), np.array([[0.3, 2.0]])
    posterior = tfd.Independent(tfd.Normal(loc.astype(np.float32), scale.astype(np.float32)), 1)
    prior = tfd.Independent(tfd.Normal(tf.zeros(2), tf.ones(2)), 1)
    expected = 0.5 * np.sum(scale**2 + loc**2 - 1 - np.log(scale**2))
    np.testing.assert_allclose(objectives.kl_divergence(posterior, prior, None).numpy(), [expected], rtol=1e-5)


def test_terms_add_up_and_reconstruction_is_bernoulli_cross_entropy(vae, images):
    seed = tf.constant([7, 8])
    terms = objectives.negative_elbo(vae, images, beta=0.25, seed=seed)
    assert all(term.shape == [8] for term in terms)
    np.testing.assert_allclose(terms.loss, terms.distortion + 0.25 * terms.rate, rtol=1e-6)
    output = vae(images, seed=seed)  # the same draw of z
    logits = tf.reshape(output.likelihood.distribution.distribution.logits, images.shape)
    cross_entropy = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits), [1, 2, 3])
    np.testing.assert_allclose(terms.distortion, cross_entropy, rtol=1e-5)


def test_eager_equals_tf_function(vae, images):
    seed = tf.constant([9, 10])
    eager = objectives.negative_elbo(vae, images, 1.0, seed=seed)
    compiled = tf.function(lambda x: objectives.negative_elbo(vae, x, 1.0, seed=seed))(images)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_dataset_average_weights_examples_not_batches(vae, images):
    seed = 3
    uneven = tf.data.Dataset.from_tensor_slices(images).batch(5)  # batches of 5 and 3
    average = evaluation.average_terms(vae, uneven, beta=1.0, seed=seed)
    per_example = [
        objectives.negative_elbo(vae, batch, 1.0, seed=tf.constant([seed, index])).loss.numpy()
        for index, batch in enumerate(uneven)
    ]
    np.testing.assert_allclose(average.loss.numpy(), np.concatenate(per_example).mean(), rtol=1e-5)


def test_average_over_images_in_memory_equals_the_average_over_those_batches(vae, images):
    uneven = tf.data.Dataset.from_tensor_slices(images).batch(5)  # batches of 5 and 3, as the images are cut
    over_dataset = evaluation.average_terms(vae, uneven, beta=0.5, seed=3)
    over_images = evaluation.average_terms(vae, images, beta=0.5, seed=3, batch_size=5)
    # The same per-example terms summed in another grouping (batches of 4 against the dataset's): a float32 sum of
    # n terms of one sign moves by up to ~n * 6e-8 relative; rtol 1e-5 covers n up to ~100.
    np.testing.assert_allclose(over_images, over_dataset, rtol=1e-5)
    # The draws follow the seed and the batch index, so other batches give other numbers.
    assert not np.allclose(evaluation.average_terms(vae, images, beta=0.5, seed=3, batch_size=4), over_dataset, rtol=1e-5)


def test_averages_of_many_new_models_build_them_and_retrace_nothing_shared(images, caplog):
    """A sweep: six models, their variables not yet built, each averaged; TF warns of no retracing."""
    settings = config.ModelConfig(hidden_sizes=(16,), latent_size=4)
    for index in range(6):
        fresh = model.build(settings, (6, 6, 1))
        average = evaluation.average_terms(fresh, images, beta=1.0, seed=index, batch_size=5)
        per_example = [
            objectives.negative_elbo(fresh, images[start:start + 5], 1.0, seed=tf.constant([index, batch])).loss
            for batch, start in enumerate((0, 5))
        ]
        np.testing.assert_allclose(average.loss.numpy(), np.concatenate(per_example).mean(), rtol=1e-5)
    assert not [record.getMessage() for record in caplog.records if "retracing" in record.getMessage()]


def test_an_averager_compiles_its_loop_once_for_one_kind_of_batches(vae, images):
    average = evaluation.terms_averager(vae)
    first = average(images, 1.0, 3, batch_size=5)
    traces = average.compiled.experimental_get_tracing_count()
    again = [average(images, beta, 3, batch_size=5) for beta in (1.0, 0.5, 2.0)]
    assert average.compiled.experimental_get_tracing_count() == traces == 1
    np.testing.assert_allclose(again[0], first, rtol=1e-6)
    assert again[1].loss.numpy() < first.loss.numpy() < again[2].loss.numpy()  # beta is an input, not a constant


# --------------------------------------------------------------------------- IWAE, Monte Carlo KL, free bits
def test_iwae_bound_with_one_sample_is_the_one_sample_elbo(vae, images):
    seed = tf.constant([11, 12])
    iwae_1 = objectives.iwae_bound(vae, images, 1, seed=seed)
    elbo = -objectives.negative_elbo(vae, images, seed=seed, kl_estimator="monte_carlo").loss
    np.testing.assert_allclose(iwae_1, elbo, rtol=1e-5)
    # ... and the training objectives agree too: IWAE with k = 1 draws the same z as the ELBO.
    for objective in ("iwae", "elbo"):
        settings = config.TrainConfig(objective=objective, iwae_k=1, kl_estimator="monte_carlo")
        loss = training_terms(vae, images, settings, 1.0, seed).loss
        np.testing.assert_allclose(loss, -tf.reduce_mean(iwae_1), rtol=1e-5)


def test_iwae_bound_equals_the_analytic_elbo_in_expectation_and_rises_with_k(vae, images):
    tiled = tf.tile(images, [500, 1, 1, 1])
    elbo = -objectives.negative_elbo(vae, images).loss  # analytic KL: its noise is the reconstruction's only
    bounds = {k: objectives.iwae_bound(vae, tiled, k, seed=tf.constant([k, 1])).numpy().reshape(500, 8)
              for k in (1, 10)}
    errors = bounds[1].std(axis=0) / np.sqrt(500)
    reconstruction = objectives.negative_elbo(vae, tiled, seed=tf.constant([3, 3])).distortion.numpy()
    kl = objectives.kl_divergence(vae.encode(images), vae.prior, None)
    analytic = -(reconstruction.reshape(500, 8).mean(axis=0) + kl)
    assert np.all(np.abs(bounds[1].mean(axis=0) - analytic) < 5 * errors)
    assert np.all(bounds[10].mean(axis=0) > bounds[1].mean(axis=0)) and elbo.shape == [8]


def test_monte_carlo_kl_converges_to_the_analytic_kl_per_dimension(vae, images):
    posterior = vae.encode(images)
    z = posterior.sample(100_000, seed=tf.constant([5, 7]))
    analytic = objectives.kl_per_dimension(posterior, vae.prior).numpy()
    monte_carlo = objectives.kl_per_dimension(posterior, vae.prior, z, estimator="monte_carlo").numpy()
    assert analytic.shape == monte_carlo.shape == (8, 4)
    np.testing.assert_allclose(analytic.sum(-1), objectives.kl_divergence(posterior, vae.prior, None), rtol=1e-5)
    np.testing.assert_allclose(monte_carlo, analytic, atol=0.03)
    total = objectives.rate(posterior, vae.prior, z, "monte_carlo").numpy()
    np.testing.assert_allclose(total, analytic.sum(-1), atol=0.05)
    with pytest.raises(ValueError, match="unknown KL estimator"):
        objectives.rate(posterior, vae.prior, z, "exact")


def test_free_bits_never_lets_a_dimension_count_for_less_than_its_floor():
    kl = tf.Variable([[0.1, 2.0, 0.5], [0.3, 4.0, 0.9]])  # batch means 0.2, 3.0, 0.7
    with tf.GradientTape() as tape:
        rate = objectives.free_bits_rate(kl, floor=0.5)
    np.testing.assert_allclose(rate, 0.5 + 3.0 + 0.7, rtol=1e-6)
    gradient = tape.gradient(rate, kl).numpy()
    np.testing.assert_allclose(gradient[:, 0], 0.0)  # below the floor: no pressure to shrink it further
    np.testing.assert_allclose(gradient[:, 1:], 0.5)  # above it: the batch mean's gradient


def test_free_bits_in_the_training_loss(vae, images):
    seed, weight = tf.constant([1, 2]), 0.7
    per_dim = objectives.kl_per_dimension(vae.encode(images), vae.prior).numpy().mean(axis=0)
    for floor in (0.0, float(np.median(per_dim)), 1e3):
        settings = config.TrainConfig(free_bits=floor)
        terms = training_terms(vae, images, settings, weight, seed)
        expected_rate = np.maximum(floor, per_dim).sum()
        np.testing.assert_allclose(terms.loss, terms.distortion + weight * expected_rate, rtol=1e-5)
        np.testing.assert_allclose(terms.rate, per_dim.sum(), rtol=1e-5)  # logged plain, without the floor
        assert terms.loss >= terms.distortion + weight * (floor * 4) - 1e-4


# --------------------------------------------------------------------------- the loss a TrainConfig trains on (tfvae.step)
def test_training_terms_are_scalars_and_the_elbo_is_the_weighted_sum(vae, images):
    settings = config.TrainConfig(num_samples=3)
    terms = training_terms(vae, images, settings, 0.25, tf.constant([4, 4]))
    assert all(term.shape == [] for term in terms)
    np.testing.assert_allclose(terms.loss, terms.distortion + 0.25 * terms.rate, rtol=1e-6)


def test_iwae_training_loss_is_below_the_elbo_loss_on_average(vae, images):
    tiled = tf.tile(images, [50, 1, 1, 1])
    elbo = training_terms(vae, tiled, config.TrainConfig(), 1.0, tf.constant([1, 1])).loss
    iwae_settings = config.TrainConfig(objective="iwae", iwae_k=20)
    iwae = training_terms(vae, tiled, iwae_settings, 1.0, tf.constant([1, 1]))
    assert iwae.loss < elbo - 0.1
    assert np.isfinite(iwae.distortion.numpy()) and iwae.rate > 0


def test_training_terms_eager_equals_tf_function(vae, images):
    seed = tf.constant([9, 10])
    variants = (config.TrainConfig(free_bits=0.1, num_samples=2), config.TrainConfig(objective="iwae", num_samples=2))
    for settings in variants:
        loss = step_lib.training_loss(dataclasses.replace(settings, beta=0.5))
        eager = loss(vae, images, seed, 0)
        compiled = tf.function(lambda x, s: loss(vae, x, seed, s))(images, tf.constant(0, tf.int64))
        for a, b in zip(eager, compiled):
            np.testing.assert_allclose(a, b, rtol=1e-5)


def weights(settings, steps):
    return [float(step_lib.kl_weight(settings, tf.constant(step, tf.int64))) for step in steps]


def test_kl_weight_schedules():
    assert weights(config.TrainConfig(beta=0.5), [0, 10**7]) == [0.5, 0.5]
    linear = config.TrainConfig(beta=2.0, kl_schedule="linear", warmup_steps=100)
    np.testing.assert_allclose(weights(linear, [0, 25, 50, 100, 10**6]), [0.0, 0.5, 1.0, 2.0, 2.0])
    cyclical = config.TrainConfig(kl_schedule="cyclical", cycle_steps=100)  # ramp over 50 steps, hold for 50
    np.testing.assert_allclose(weights(cyclical, [0, 25, 50, 99, 100, 125, 350]), [0, 0.5, 1, 1, 0, 0.5, 1])
    compiled = tf.function(lambda step: step_lib.kl_weight(linear, step))
    assert compiled(tf.constant(50, tf.int64)).dtype == tf.float32
    np.testing.assert_allclose(compiled(tf.constant(50, tf.int64)), 1.0)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("train.objective", "vimco", "objective must be one of elbo, iwae"),
        ("train.iwae_k", 0, "iwae_k must be an integer >= 1"),
        ("train.num_samples", 0, "num_samples must be an integer >= 1"),
        ("train.num_samples", 2.5, "num_samples must be an integer >= 1"),
        ("train.kl_estimator", "exact", "kl_estimator must be one of analytic, monte_carlo"),
        ("train.free_bits", -0.5, "free_bits must be a number >= 0"),
        ("train.kl_schedule", "cosine", "kl_schedule must be one of constant, linear, cyclical"),
        ("train.warmup_steps", 0, "warmup_steps must be a positive integer"),
        ("train.cycle_steps", 1, "cycle_steps must be an integer > 1"),
    ],
)
def test_train_config_rejects_nonsense(field, value, words):
    with pytest.raises(config.ConfigError, match=words):
        config.override(config.preset("tiny"), {field: value})


def test_free_bits_with_the_iwae_objective_is_refused():
    with pytest.raises(config.ConfigError, match="free_bits applies to the ELBO"):
        config.override(config.preset("tiny"), {"train.objective": "iwae", "train.free_bits": 0.5})


def test_burda_presets():
    vae, iwae5, iwae50 = (config.preset(f"mnist-burda-{name}") for name in ("vae", "iwae5", "iwae50"))
    assert vae.model.hidden_sizes == (200, 200) and vae.model.latent_size == 50 and vae.model.activation == "tanh"
    assert vae.data.binarize == "dynamic" and vae.train.objective == "elbo"
    assert (iwae5.train.objective, iwae5.train.iwae_k, iwae50.train.iwae_k) == ("iwae", 5, 50)
    assert set(config.differences(vae, iwae50)) == {"name", "train.objective", "train.iwae_k"}  # one term apart

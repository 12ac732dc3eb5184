"""The objective: its terms against independent computations."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import config, model, objectives

tfd = tfp.distributions


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
    np.testing.assert_allclose(terms.loss, terms.reconstruction + 0.25 * terms.kl, rtol=1e-6)
    output = vae(images, seed=seed)  # the same draw of z
    logits = output.likelihood.distribution.logits
    cross_entropy = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits), [1, 2, 3])
    np.testing.assert_allclose(terms.reconstruction, cross_entropy, rtol=1e-5)


def test_eager_equals_tf_function(vae, images):
    seed = tf.constant([9, 10])
    eager = objectives.negative_elbo(vae, images, 1.0, seed=seed)
    compiled = tf.function(lambda x: objectives.negative_elbo(vae, x, 1.0, seed=seed))(images)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_dataset_average_weights_examples_not_batches(vae, images):
    seed = 3
    uneven = tf.data.Dataset.from_tensor_slices(images).batch(5)  # batches of 5 and 3
    average = objectives.average_over_dataset(vae, uneven, beta=1.0, seed=seed)
    per_example = [
        objectives.negative_elbo(vae, batch, 1.0, seed=tf.constant([seed, index])).loss.numpy()
        for index, batch in enumerate(uneven)
    ]
    np.testing.assert_allclose(average.loss.numpy(), np.concatenate(per_example).mean(), rtol=1e-5)

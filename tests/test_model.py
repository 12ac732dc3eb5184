"""Networks and the VAE: distribution shapes, scales, and the public methods."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import config, model, nets

IMAGE_SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def vae():
    tf.random.set_seed(0)
    return model.build(config.ModelConfig(hidden_sizes=(16,), latent_size=3), IMAGE_SHAPE)


def test_encoder_returns_diagonal_normal_with_latent_event(vae):
    posterior = vae.encode(tf.zeros([5, *IMAGE_SHAPE]))
    assert posterior.batch_shape == [5] and posterior.event_shape == [3]
    assert posterior.log_prob(tf.zeros([5, 3])).shape == [5]
    assert np.all(posterior.stddev().numpy() > 0)


def test_decoder_returns_bernoulli_with_image_event(vae):
    likelihood = vae.decode(tf.zeros([5, 3]))
    assert likelihood.batch_shape == [5] and likelihood.event_shape == list(IMAGE_SHAPE)
    assert likelihood.log_prob(tf.zeros([5, *IMAGE_SHAPE])).shape == [5]
    # Extra leading sample dimensions flow through: z [k, b, latent] -> batch [k, b].
    assert vae.decode(tf.zeros([2, 5, 3])).batch_shape == [2, 5]


def test_prior_is_standard_normal(vae):
    assert vae.prior.event_shape == [3] and vae.prior.batch_shape == []
    # float32 log-density (-2.76, a few roundings of 6e-8) against the float64 constant: rtol 1e-6.
    np.testing.assert_allclose(vae.prior.log_prob(tf.zeros([3])).numpy(), -1.5 * np.log(2 * np.pi), rtol=1e-6)


def test_sample_and_reconstruct_give_images_in_unit_interval(vae):
    samples = vae.sample(4, seed=tf.constant([1, 2])).numpy()
    reconstructions = vae.reconstruct(tf.random.uniform([6, *IMAGE_SHAPE], seed=1)).numpy()
    assert samples.shape == (4, *IMAGE_SHAPE) and reconstructions.shape == (6, *IMAGE_SHAPE)
    for images in (samples, reconstructions):
        assert images.min() >= 0 and images.max() <= 1


def test_posterior_scale_is_floored_even_for_huge_negative_log_variance():
    encoder = nets.Encoder([4], latent_size=2, min_scale=1e-3)
    encoder(tf.zeros([1, 2, 2, 1]))
    head = encoder._head
    head.w.assign(tf.zeros_like(head.w))
    head.b.assign([0.0, 0.0, -1e4, 1e4])  # loc 0, log-variances -1e4 and +1e4
    scale = encoder(tf.zeros([1, 2, 2, 1])).stddev().numpy()
    assert np.all(np.isfinite(scale))
    np.testing.assert_allclose(scale[0, 0], 1e-3, rtol=1e-5)


def test_sizes_are_validated_at_construction():
    with pytest.raises(ValueError, match="latent_size must be a positive integer, got 0"):
        nets.Encoder([8], latent_size=0)
    with pytest.raises(ValueError, match="output_shape must be"):
        nets.Decoder([8], output_shape=(28, 28))


def test_draw_latents_has_the_posteriors_distribution_and_reparameterised_gradients():
    loc = tf.Variable([[0.5, -1.0, 2.0], [0.0, 3.0, -2.0]])
    scale = tf.Variable([[0.1, 1.0, 2.0], [0.5, 0.2, 3.0]])
    posterior = tfp.distributions.Independent(tfp.distributions.Normal(loc, scale), 1)
    with tf.GradientTape() as tape:
        z = model.draw_latents(posterior, [20000], tf.constant([5, 6]))
        total = tf.reduce_sum(z)
    assert z.shape == [20000, 2, 3]
    np.testing.assert_allclose(tf.reduce_mean(z, 0), loc, atol=4 * 3.0 / np.sqrt(20000))
    np.testing.assert_allclose(tf.math.reduce_std(z, 0), scale, rtol=0.03)
    d_loc, d_scale = tape.gradient(total, [loc, scale])
    np.testing.assert_allclose(d_loc, np.full([2, 3], 20000.0))
    np.testing.assert_allclose(d_scale, tf.reduce_sum((z - loc) / scale, 0), rtol=1e-4, atol=1e-2)
    # Stateless: the seed decides the draws.
    again = model.draw_latents(posterior, [20000], tf.constant([5, 6]))
    other = model.draw_latents(posterior, [20000], tf.constant([5, 7]))
    np.testing.assert_array_equal(z, again)
    assert not np.allclose(z, other)
    # A scalar scale broadcasts like TFP's sample; other posteriors are TFP's own draws.
    assert model.draw_latents(tfp.distributions.Normal(loc, 0.5), [4], tf.constant([1, 2])).shape == [4, 2, 3]
    full = tfp.distributions.MultivariateNormalDiag(loc, scale)
    np.testing.assert_array_equal(
        model.draw_latents(full, [4], tf.constant([1, 2])), full.sample([4], seed=tf.constant([1, 2]))
    )

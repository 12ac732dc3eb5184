"""Networks: likelihoods against independent formulas, conv shapes from the data, the deterministic encoder."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

from tfvae import config, model, nets, step

tfd = tfp.distributions


def unit_images(shape, seed=0):
    return tf.random.stateless_uniform(shape, seed=[seed, 1], minval=0.01, maxval=0.99)


@pytest.mark.parametrize("likelihood", nets.LIKELIHOODS)
def test_every_likelihood_scores_images_with_one_number_each(likelihood):
    decoder = nets.Decoder([8], (4, 5, 2), likelihood=likelihood)
    p = decoder(tf.zeros([3, 6, 2]))  # leading sample axes flow through
    assert p.batch_shape == [3, 6] and p.event_shape == [4, 5, 2]
    assert p.log_prob(unit_images([6, 4, 5, 2])).shape == [3, 6]
    mean = p.mean().numpy()
    assert mean.shape == (3, 6, 4, 5, 2) and mean.min() >= 0 and mean.max() <= 1


@pytest.mark.parametrize("likelihood", nets.LIKELIHOODS)
def test_likelihood_over_flat_pixels_equals_tfps_over_the_image_shape(likelihood):
    image_shape = (3, 4, 2)
    pixels = nets.PixelLikelihood(likelihood, image_shape)
    if likelihood == "normal":  # a different scale for every pixel, so a misplaced reshape shows
        pixels.raw_scale.assign(tf.random.stateless_normal(image_shape, seed=[4, 4]))
    outputs = tf.random.stateless_normal([2, 5, *image_shape], seed=[3, 3]) * 2
    x = unit_images([5, *image_shape])
    per_pixel = {
        "bernoulli": lambda: tfd.Bernoulli(logits=outputs, dtype=tf.float32),
        "continuous_bernoulli": lambda: tfd.ContinuousBernoulli(logits=outputs),
        "normal": lambda: tfd.Normal(tf.sigmoid(outputs), pixels.scale()),
    }[likelihood]()
    if likelihood == "bernoulli":
        x = tf.round(x)
    ours, theirs = pixels(outputs), tfd.Independent(per_pixel, 3)
    assert ours.batch_shape == [2, 5] and ours.event_shape == list(image_shape)
    np.testing.assert_allclose(ours.log_prob(x), theirs.log_prob(x), rtol=1e-5)
    np.testing.assert_allclose(ours.mean(), theirs.mean(), rtol=1e-6)  # elementwise: the same ops on the same values


def test_bernoulli_log_prob_is_tfps_and_the_cross_entropy():
    logits = tf.random.stateless_normal([5, 3, 3, 1], seed=[1, 2]) * 4
    x = tf.cast(unit_images([5, 3, 3, 1]) > 0.5, tf.float32)
    ours = nets.PixelLikelihood("bernoulli", (3, 3, 1))(logits).log_prob(x)
    theirs = tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3).log_prob(x)
    cross_entropy = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), [1, 2, 3])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(ours, -cross_entropy, rtol=1e-5)


def test_continuous_bernoulli_is_a_normalised_density_with_the_known_constant():
    logits = tf.constant([[-2.0, 0.3, 1.5]])[..., None, None]  # [1, 3, 1, 1]
    x = tf.constant([[0.2, 0.9, 0.5]])[..., None, None]
    ours = nets.PixelLikelihood("continuous_bernoulli", (3, 1, 1))(logits).log_prob(x).numpy()
    lam = 1 / (1 + np.exp(-np.array([-2.0, 0.3, 1.5])))
    # Loaiza-Ganem & Cunningham (2019), eq. 7: C(lam) = 2 artanh(1 - 2 lam) / (1 - 2 lam).
    log_constant = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
    xs = np.array([0.2, 0.9, 0.5])
    expected = np.sum(log_constant + xs * np.log(lam) + (1 - xs) * np.log(1 - lam))
    np.testing.assert_allclose(ours, [expected], rtol=1e-4)
    grid = np.linspace(0.0005, 0.9995, 1000, dtype=np.float32)  # integrates to 1 on [0, 1]
    density = tfd.ContinuousBernoulli(logits=1.5).prob(grid).numpy()
    np.testing.assert_allclose(density.mean(), 1.0, atol=2e-3)


def test_normal_with_fixed_scale_is_squared_error_over_two_s_squared_plus_a_constant():
    s = 0.3
    outputs = tf.random.stateless_normal([4, 2, 3, 1], seed=[3, 4])
    x = unit_images([4, 2, 3, 1])
    log_p = nets.PixelLikelihood("normal", (2, 3, 1), normal_scale=s)(outputs).log_prob(x).numpy()
    mean = tf.sigmoid(outputs).numpy()
    squared_error = ((x.numpy() - mean) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(-log_p, squared_error / (2 * s**2) + 6 * np.log(s * np.sqrt(2 * np.pi)), rtol=1e-5)
    np.testing.assert_allclose(log_p, stats.norm.logpdf(x.numpy(), mean, s).sum(axis=(1, 2, 3)), rtol=1e-5)


def test_learned_normal_scale_is_one_trainable_floored_variable_per_pixel():
    likelihood = nets.PixelLikelihood("normal", (2, 3, 1), normal_scale="learned")
    assert [v.shape for v in likelihood.trainable_variables] == [(2, 3, 1)]
    np.testing.assert_allclose(likelihood.scale().numpy(), 1.0, rtol=1e-5)
    likelihood.raw_scale.assign(tf.fill([2, 3, 1], -1e4))
    np.testing.assert_allclose(likelihood.scale().numpy(), 1e-3, rtol=1e-5)
    assert not nets.PixelLikelihood("normal", (2, 3, 1), normal_scale=0.5).trainable_variables


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (30, 30, 1)])
def test_conv_networks_take_their_shapes_from_the_data(image_shape):
    settings = config.ModelConfig(hidden_sizes=(16,), latent_size=3, architecture="conv", conv_channels=(4, 8))
    vae = model.VAE(nets.build_encoder(settings, image_shape), nets.build_decoder(settings, image_shape))
    assert isinstance(vae.encoder, nets.ConvEncoder) and isinstance(vae.decoder, nets.ConvDecoder)
    images = unit_images([2, *image_shape])
    posterior = vae.encode(images)
    assert posterior.batch_shape == [2] and posterior.event_shape == [3]
    likelihood = vae.decode(posterior.sample(5, seed=[1, 1]))  # [5, 2, 3] draws
    assert likelihood.batch_shape == [5, 2] and likelihood.event_shape == list(image_shape)
    assert likelihood.log_prob(images).shape == [5, 2]


def test_mlp_networks_are_the_default_and_mirror_the_hidden_sizes():
    settings = config.ModelConfig(hidden_sizes=(16, 8), latent_size=3, likelihood="continuous_bernoulli")
    encoder, decoder = nets.build_encoder(settings, (6, 6, 1)), nets.build_decoder(settings, (6, 6, 1))
    assert isinstance(encoder, nets.Encoder) and isinstance(decoder, nets.Decoder)
    decoder(tf.zeros([1, 3]))
    weights = [v for v in decoder.trainable_variables if v.name.startswith("decoder/mlp") and "w:" in v.name]
    assert [w.shape[-1] for w in weights] == [8, 16, 36]
    assert decoder.likelihood.likelihood == "continuous_bernoulli"


def test_deterministic_encoder_fixes_the_scale_and_with_beta_zero_the_loss_is_reconstruction():
    settings = config.ModelConfig(hidden_sizes=(16,), latent_size=3, deterministic_encoder=True, min_scale=1e-4)
    vae = model.VAE(nets.build_encoder(settings, (6, 6, 1)), nets.build_decoder(settings, (6, 6, 1)))
    images = tf.cast(unit_images([4, 6, 6, 1]) > 0.5, tf.float32)
    posterior = vae.encode(images)
    np.testing.assert_allclose(posterior.stddev().numpy(), 1e-4)
    z = posterior.sample(seed=[2, 3])
    np.testing.assert_allclose(z, posterior.mean(), atol=1e-3)
    loss_fn = step.training_loss(config.TrainConfig(beta=0.0))
    terms = loss_fn(vae, images, tf.constant([1, 2]), 0)
    assert np.isfinite(terms.rate.numpy()) and terms.rate.numpy() > 3 * 8  # a point mass carries many nats
    np.testing.assert_allclose(terms.loss, terms.distortion)
    # The autoencoder's loss reaches the mean of the posterior only: the gradient flows through the mean.
    with tf.GradientTape() as tape:
        loss = loss_fn(vae, images, tf.constant([1, 2]), 0).loss
    gradients = tape.gradient(loss, vae.encoder.trainable_variables)
    assert all(g is not None and np.any(g.numpy() != 0) for g in gradients)


def test_networks_validate_their_arguments():
    with pytest.raises(ValueError, match="unknown likelihood 'gaussian'"):
        nets.Decoder([8], (4, 4, 1), likelihood="gaussian")
    with pytest.raises(ValueError, match="normal_scale must be a number > 0"):
        nets.Decoder([8], (4, 4, 1), likelihood="normal", normal_scale=0.0)
    with pytest.raises(ValueError, match="channels must list at least one"):
        nets.ConvEncoder([], [8], latent_size=2)
    with pytest.raises(ValueError, match="output_shape must be"):
        nets.ConvDecoder([8], (28, 28))


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("model.likelihood", "poisson", "likelihood must be one of bernoulli, continuous_bernoulli, normal"),
        ("model.normal_scale", 0, "normal_scale must be a number > 0"),
        ("model.normal_scale", -0.1, "normal_scale must be a number > 0"),
        ("model.normal_scale", "learnt", "normal_scale must be a number > 0"),
        ("model.architecture", "resnet", "architecture must be one of mlp, conv"),
        ("model.conv_channels", [], "conv_channels must be a non-empty list"),
        ("model.conv_channels", [32, 0], "conv_channels must be a non-empty list"),
        ("model.deterministic_encoder", "yes", "deterministic_encoder must be true or false"),
    ],
)
def test_model_config_rejects_nonsense(field, value, words):
    with pytest.raises(config.ConfigError, match=words):
        config.override(config.preset("tiny"), {field: value})


def test_new_model_fields_round_trip_through_json():
    experiment = config.override(
        config.preset("tiny"),
        {
            "model.architecture": "conv",
            "model.conv_channels": [8, 16],
            "model.likelihood": "normal",
            "model.normal_scale": 0.1,
        },
    )
    assert config.Experiment.from_dict(experiment.to_dict()) == experiment
    assert experiment.model.conv_channels == (8, 16)


def test_a_learned_scale_is_saved_in_checkpoints(tmp_path):
    decoder = nets.Decoder([4], (2, 2, 1), likelihood="normal")
    decoder.likelihood.raw_scale.assign(tf.fill([2, 2, 1], -2.0))
    path = tf.train.Checkpoint(model=decoder).save(str(tmp_path / "ckpt"))
    restored = nets.Decoder([4], (2, 2, 1), likelihood="normal")
    tf.train.Checkpoint(model=restored).restore(path).expect_partial()
    np.testing.assert_allclose(restored.likelihood.raw_scale.numpy(), -2.0)
    assert isinstance(restored, snt.Module)

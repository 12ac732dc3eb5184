"""The disentangling objectives: DIP-VAE, the controlled capacity and FactorVAE against hand computations."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfvae import config, disentangling, model, objectives, optimizers
from tfvae import step as step_lib


@pytest.fixture(scope="module")
def vae():
    tf.random.set_seed(1)
    return model.build(config.ModelConfig(hidden_sizes=(16,), latent_size=3), (6, 6, 1))


@pytest.fixture(scope="module")
def images():
    return tf.cast(tf.random.stateless_uniform([8, 6, 6, 1], seed=[3, 4]) > 0.5, tf.float32)


SEED = tf.constant([7, 8])


# --------------------------------------------------------------------------- DIP-VAE
def test_dip_covariance_and_penalty_equal_a_hand_computation():
    means = np.array([[1.0, 2.0], [3.0, 0.0], [2.0, 4.0]], np.float32)
    variances = np.array([[0.5, 1.0], [1.5, 2.0], [1.0, 3.0]], np.float32)
    # By hand: the mean code is (2, 2); the centred codes (-1, 0), (1, -2), (0, 2); over M = 3,
    # Var_1 = (1 + 1 + 0) / 3 = 2/3, Var_2 = (0 + 4 + 4) / 3 = 8/3, Cov_12 = (0 - 2 + 0) / 3 = -2/3.
    cov_i = np.array([[2 / 3, -2 / 3], [-2 / 3, 8 / 3]])
    np.testing.assert_allclose(disentangling.dip_covariance(means), cov_i, rtol=1e-6)
    # DIP-VAE-II adds the mean variances, (1, 2), to the diagonal.
    cov_ii = cov_i + np.diag([1.0, 2.0])
    np.testing.assert_allclose(disentangling.dip_covariance(means, variances), cov_ii, rtol=1e-6)
    # lambda_od * 2 * (2/3)^2 + lambda_d * ((2/3 - 1)^2 + (8/3 - 1)^2), with lambda_od = 2, lambda_d = 3:
    expected_i = 2 * 2 * (4 / 9) + 3 * (1 / 9 + 25 / 9)
    np.testing.assert_allclose(disentangling.dip_penalty(cov_i, 2.0, 3.0), expected_i, rtol=1e-6)
    expected_ii = 2 * 2 * (4 / 9) + 3 * ((5 / 3 - 1) ** 2 + (14 / 3 - 1) ** 2)
    np.testing.assert_allclose(disentangling.dip_penalty(cov_ii, 2.0, 3.0), expected_ii, rtol=1e-6)


def test_dip_penalty_is_zero_for_codes_with_identity_covariance():
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)  # mean 0, (1/4) sum m m^T = I
    assert float(disentangling.dip_penalty(disentangling.dip_covariance(corners), 10.0, 100.0)) == 0.0
    # DIP-VAE-II: means of covariance 0.75 I and variances 0.25 make the aggregate posterior's I.
    covariance = disentangling.dip_covariance(np.float32(np.sqrt(0.75)) * corners, np.full((4, 2), 0.25, np.float32))
    assert float(disentangling.dip_penalty(covariance, 10.0, 10.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_dip_vae_loss_adds_the_penalty_of_the_posterior_moments(vae, images, kind):
    settings = config.TrainConfig(dip=kind, dip_lambda_offdiag=2.0)
    terms = step_lib.training_loss(settings)(vae, images, SEED, 0)
    posterior = vae.encode(images)
    means, scales = posterior.mean().numpy(), posterior.stddev().numpy()
    centred = means - means.mean(axis=0)
    covariance = centred.T @ centred / len(means) + (np.diag((scales**2).mean(axis=0)) if kind == "ii" else 0)
    lambda_diag = 20.0 if kind == "i" else 2.0  # the paper's ratios: 10 lambda_od (I), lambda_od (II)
    off = covariance - np.diag(np.diag(covariance))
    penalty = 2.0 * (off**2).sum() + lambda_diag * ((np.diag(covariance) - 1) ** 2).sum()
    plain = objectives.elbo_loss(vae, images, SEED)
    np.testing.assert_allclose(terms.loss, plain.loss + penalty, rtol=1e-5)
    np.testing.assert_allclose([terms.distortion, terms.rate], [plain.distortion, plain.rate], rtol=1e-6)


# --------------------------------------------------------------------------- controlled capacity
def test_capacity_grows_linearly_to_its_maximum_then_stays():
    values = [float(disentangling.capacity(step, 25.0, 100)) for step in (0, 10, 50, 100, 150)]
    np.testing.assert_allclose(values, [0.0, 2.5, 12.5, 25.0, 25.0], rtol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    ((0, -1.0, 10), "capacity_max must be a non-negative finite number, got -1.0"),
    ((0, float("nan"), 10), "capacity_max must be a non-negative finite number, got nan"),
    ((0, 25.0, 0), "capacity_steps must be a positive integer, got 0"),
])
def test_a_capacity_below_zero_is_one_line_naming_the_argument(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        disentangling.capacity(*arguments)
    with pytest.raises(ValueError, match="^gamma must be a non-negative finite number, got -1$"):
        disentangling.capacity_term(tf.constant(3.0), tf.constant(1.0), -1)


@pytest.mark.parametrize("step", [0, 40, 100, 300])
def test_capacity_loss_is_distortion_plus_gamma_times_the_distance_of_the_rate_from_c(vae, images, step):
    settings = config.TrainConfig(capacity_max=5.0, capacity_steps=100, capacity_gamma=30.0)
    terms = step_lib.training_loss(settings)(vae, images, SEED, step)
    plain = objectives.elbo_loss(vae, images, SEED)
    c = 5.0 * min(1.0, step / 100)
    np.testing.assert_allclose(terms.loss, plain.distortion + 30.0 * abs(float(plain.rate) - c), rtol=1e-5)
    np.testing.assert_allclose([terms.distortion, terms.rate], [plain.distortion, plain.rate], rtol=1e-6)


# --------------------------------------------------------------------------- FactorVAE
def test_permutation_keeps_each_dimensions_values_and_breaks_their_dependence():
    rng = np.random.default_rng(0)
    first = rng.standard_normal(4096).astype(np.float32)
    codes = np.stack([first, first, -2 * first], axis=1)  # perfectly dependent columns
    permuted = disentangling.permute_dimensions(codes, SEED).numpy()
    np.testing.assert_array_equal(np.sort(permuted, axis=0), np.sort(codes, axis=0))  # each marginal kept
    correlations = np.corrcoef(permuted, rowvar=False)[np.triu_indices(3, 1)]
    # Independent columns of 4096 have correlations of sd 1/64 ~ 0.016: 0.08 is 5 sd; the codes' were +-1.
    assert np.all(np.abs(correlations) < 0.08), correlations
    assert np.mean(permuted[:, 0] == codes[:, 0]) < 0.01  # the rows are moved, not kept
    other = disentangling.permute_dimensions(codes, tf.constant([7, 9])).numpy()
    assert not np.array_equal(other, permuted)
    np.testing.assert_array_equal(disentangling.permute_dimensions(codes, SEED), permuted)  # stateless


def test_a_discriminator_on_a_batch_of_one_is_one_line_naming_the_field():
    with pytest.raises(ValueError, match=r"^data\.batch_size must be >= 2 for FactorVAE") as error:
        disentangling.permute_dimensions(np.zeros([1, 3], np.float32), SEED)
    assert "\n" not in str(error.value)


def trained_tc_estimate(sample_codes, steps: int = 400, batch: int = 256) -> float:
    """D trained `steps` steps on codes from `sample_codes(n, seed)` and their permutation, then its TC estimate
    on 8192 fresh codes."""
    tf.random.set_seed(0)
    discriminator = disentangling.Discriminator((64, 64))
    discriminator(tf.zeros([2, 2]))
    # The paper's Adam betas, a faster rate than its 1e-4 so that a few hundred steps suffice.
    optimizer = optimizers.build_optimizer(discriminator, 1e-3, "adam",
                                           adam_betas=disentangling.DISCRIMINATOR_ADAM_BETAS)

    @tf.function
    def train(step: tf.Tensor) -> None:
        codes = sample_codes(batch, tf.stack([step, 0]))
        permuted = disentangling.permute_dimensions(codes, tf.stack([step, 1]))
        with tf.GradientTape() as tape:
            loss = disentangling.discriminator_loss(discriminator(codes), discriminator(permuted))
        optimizer.apply(tape.gradient(loss, discriminator.trainable_variables), discriminator.trainable_variables)

    for step in range(steps):
        train(tf.constant(step))
    return float(disentangling.density_ratio_tc(discriminator(sample_codes(8192, tf.constant([-1, -1])))))


def test_the_discriminators_tc_estimate_is_near_zero_for_independent_codes_and_large_for_dependent_ones():
    def independent(n, seed):
        return tf.random.stateless_normal([n, 2], seed)

    def dependent(n, seed):  # z2 = z1 + noise of sd 0.1: TC = 0.5 log(1 + 1 / 0.1^2) = 2.31 nats
        z1, noise = tf.unstack(tf.random.stateless_normal([2, n], seed))
        return tf.stack([z1, z1 + 0.1 * noise], axis=1)

    near_zero, large = trained_tc_estimate(independent), trained_tc_estimate(dependent)
    # Measured -0.008 and 2.16 nats here (2.16 after 2000 steps too): margins of 0.15 nats and half the true 2.31.
    assert abs(near_zero) < 0.15, near_zero
    assert large > 1.15, large


def test_the_factor_vae_loss_adds_gamma_times_the_discriminators_estimate(vae, images):
    tf.random.set_seed(2)
    discriminator = disentangling.Discriminator((8,))
    losses = disentangling.factor_vae_losses(vae, discriminator, images, SEED, gamma=3.0)
    plain = objectives.elbo_loss(vae, images, SEED)
    z = model.draw_latents(vae.encode(images), [1], SEED)[0]  # the codes the loss drew
    np.testing.assert_allclose(
        losses.terms.loss, plain.loss + 3.0 * disentangling.density_ratio_tc(discriminator(z)), rtol=1e-5
    )
    permuted = disentangling.permute_dimensions(z, tf.random.experimental.stateless_fold_in(SEED, 1))
    expected = disentangling.discriminator_loss(discriminator(z), discriminator(permuted))
    np.testing.assert_allclose(losses.discriminator, expected, rtol=1e-6)


def test_each_network_is_differentiated_for_its_own_loss_only(vae, images):
    """The encoder's gradients are the ELBO's when gamma is 0 (D's loss does not reach the encoder), and D's are
    those of its own loss (the model's TC term does not reach D)."""
    settings = config.TrainConfig(factor_weight=1.0, discriminator_hidden_sizes=(8,))
    adversary = step_lib.build_adversary(settings, latent_size=3)
    loss = step_lib.training_loss(dataclasses.replace(settings, factor_weight=1e-30))  # ~0, still FactorVAE
    _, gradients, network_gradients, _ = step_lib.adversarial_gradients(vae, adversary.network, images, SEED, loss, 0)
    with tf.GradientTape() as tape:
        plain = objectives.elbo_loss(vae, images, SEED).loss
    for got, expected in zip(gradients, tape.gradient(plain, vae.trainable_variables)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    with tf.GradientTape() as tape:
        own = disentangling.factor_vae_losses(vae, adversary.network, images, SEED, gamma=1.0).discriminator
    for got, expected in zip(network_gradients, tape.gradient(own, adversary.network.trainable_variables)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_the_papers_64x64_network_is_what_the_dsprites64_presets_build():
    experiment = config.preset("dsprites64-factorvae")
    vae = model.build(experiment.model, (64, 64, 1))
    model.create_variables(vae, (64, 64, 1))
    shapes = {v.name: tuple(v.shape) for v in vae.trainable_variables}
    encoder = [shapes[f"conv_encoder/conv_{i}/w:0"] for i in range(4)]
    assert encoder == [(4, 4, 1, 32), (4, 4, 32, 32), (4, 4, 32, 64), (4, 4, 64, 64)]  # 64 -> 32 -> 16 -> 8 -> 4
    assert shapes["conv_encoder/mlp/linear_0/w:0"] == (4 * 4 * 64, 256)
    assert shapes["conv_encoder/loc_and_log_variance/w:0"] == (256, 2 * 10)
    assert [shapes[f"conv_decoder/mlp/linear_{i}/w:0"] for i in range(2)] == [(10, 256), (256, 4 * 4 * 64)]
    decoder = [shapes[f"conv_decoder/deconv_{i}/w:0"] for i in range(4)]  # 4 -> 8 -> 16 -> 32 -> 64
    assert decoder == [(4, 4, 64, 64), (4, 4, 32, 64), (4, 4, 32, 32), (4, 4, 1, 32)]
    assert vae.decode(tf.zeros([2, 10])).event_shape == (64, 64, 1)

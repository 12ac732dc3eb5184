"""Two stochastic layers: the concatenated posterior and prior against NumPy, the objective's rate, the plumbing."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import hierarchy, model, objectives

tfd = tfp.distributions

IMAGE_SHAPE = (3, 3, 1)
D1, D2 = 3, 2
MIN_SCALE = 1e-4


class TwoLayerVAE(snt.Module):
    """A stand-in for `model.VAE` with a prior module: `prior` is `prior_module()` at every use."""

    def __init__(self, encoder, decoder, prior_module):
        super().__init__(name="two_layer_vae")
        self.encoder, self.decoder, self.prior_module = encoder, decoder, prior_module

    @property
    def prior(self):
        return self.prior_module()

    def encode(self, images):
        return self.encoder(images)

    def decode(self, z):
        return self.decoder(z)


def make_vae(seed=1):
    tf.random.set_seed(seed)
    parts = hierarchy.build_two_layer(
        IMAGE_SHAPE, (D1, D2), encoder_hidden=((6, 5), (4,)), prior_hidden=(4, 3), decoder_hidden=(5,)
    )
    vae = TwoLayerVAE(*parts)
    objectives.negative_elbo(vae, binary_images(), seed=tf.constant([0, 0]))  # creates every variable
    return vae


def binary_images(n=4, seed=3):
    return tf.cast(tf.random.stateless_uniform([n, *IMAGE_SHAPE], seed=[seed, 4]) > 0.5, tf.float32)


@pytest.fixture(scope="module")
def vae():
    return make_vae()


@pytest.fixture(scope="module")
def images():
    return binary_images()


# --------------------------------------------------------------------------- NumPy, from the weights
def weight(module, suffix):
    (value,) = [v.numpy().astype(np.float64) for v in module.variables if v.name.endswith(suffix)]
    return value


def numpy_normal(encoder, inputs, hidden_layers):
    """The mean and scale a `nets.Encoder` (tanh MLP, then the loc/log-variance head) gives for rows `inputs`."""
    h = np.asarray(inputs, np.float64)
    for index in range(hidden_layers):
        h = np.tanh(h @ weight(encoder, f"mlp/linear_{index}/w:0") + weight(encoder, f"mlp/linear_{index}/b:0"))
    out = h @ weight(encoder, "loc_and_log_variance/w:0") + weight(encoder, "loc_and_log_variance/b:0")
    loc, log_variance = np.split(out, 2, axis=-1)
    return loc, MIN_SCALE + np.exp(0.5 * np.minimum(log_variance, 20.0))


def numpy_conditional(conditional, inputs, hidden_layers):
    """`numpy_normal` for a `ConditionalNormal` on inputs [..., n]: the leading axes kept."""
    inputs = np.asarray(inputs, np.float64)
    loc, scale = numpy_normal(conditional.network, inputs.reshape(-1, inputs.shape[-1]), hidden_layers)
    shape = (*inputs.shape[:-1], -1)
    return loc.reshape(shape), scale.reshape(shape)


def normal_log_density(x, loc, scale):
    return np.sum(-0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi), axis=-1)


def numpy_log_q(vae, images, z):
    flat = images.numpy().reshape(len(images), -1)
    loc1, scale1 = numpy_normal(vae.encoder.q_z1, flat, 2)
    z1, z2 = z[..., :D1], z[..., D1:]
    loc2, scale2 = numpy_conditional(vae.encoder.q_z2, z1, 1)
    return normal_log_density(z1, loc1, scale1), normal_log_density(z2, loc2, scale2)


def numpy_log_p(vae, z):
    z1, z2 = z[..., :D1], z[..., D1:]
    loc1, scale1 = numpy_conditional(vae.prior_module.p_z1, z2, 2)
    return normal_log_density(z1, loc1, scale1), normal_log_density(z2, 0.0, 1.0)


# --------------------------------------------------------------------------- the distributions
def test_posterior_log_prob_is_the_two_normal_log_densities_computed_by_hand(vae, images):
    posterior = vae.encode(images)
    assert posterior.batch_shape == [4] and posterior.event_shape == [D1 + D2]
    assert vae.encoder.latent_size == D1 + D2
    z = posterior.sample(3, seed=tf.constant([1, 2]))
    assert z.shape == [3, 4, D1 + D2]
    log_z1, log_z2 = numpy_log_q(vae, images, z.numpy().astype(np.float64))
    np.testing.assert_allclose(posterior.log_prob(z), log_z1 + log_z2, rtol=1e-5, atol=1e-5)
    layers = posterior.layer_log_probs(z)
    np.testing.assert_allclose(layers[0], log_z1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layers[1], log_z2, rtol=1e-5, atol=1e-5)


def test_prior_log_prob_is_a_standard_normal_plus_the_conditional_computed_by_hand(vae):
    prior = vae.prior
    assert prior.batch_shape == [] and prior.event_shape == [D1 + D2]
    z = tf.random.stateless_normal([2, 4, D1 + D2], seed=[5, 6]) * 2  # any z, not only the prior's draws
    log_z1, log_z2 = numpy_log_p(vae, z.numpy().astype(np.float64))
    np.testing.assert_allclose(prior.log_prob(z), log_z1 + log_z2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prior.layer_log_probs(z)[0], log_z1, rtol=1e-5, atol=1e-5)


def test_posterior_draws_z2_from_the_conditional_at_the_drawn_z1(images):
    vae = make_vae(seed=2)
    # The log-variance half of q(z2|z1)'s head set to -60: scale(z1) = 1e-4 + exp(-30) for every z1.
    (w,) = [v for v in vae.encoder.q_z2.variables if v.name.endswith("loc_and_log_variance/w:0")]
    (b,) = [v for v in vae.encoder.q_z2.variables if v.name.endswith("loc_and_log_variance/b:0")]
    w.assign(tf.concat([w[:, :D2], tf.zeros_like(w[:, D2:])], axis=1))
    b.assign(tf.concat([b[:D2], tf.fill([D2], -60.0)], axis=0))
    z = vae.encode(images).sample(500, seed=tf.constant([7, 8])).numpy().astype(np.float64)
    z1, z2 = z[..., :D1], z[..., D1:]
    loc2, scale2 = numpy_conditional(vae.encoder.q_z2, z1, 1)
    np.testing.assert_allclose(scale2, MIN_SCALE, rtol=1e-6)
    np.testing.assert_allclose(z2, loc2, atol=1e-3)  # z2 is the conditional mean at this draw's z1 (+- 1e-4)
    assert np.std(z2, axis=0).min() > 1e-2  # and varies with z1 from draw to draw


def test_standardised_draws_of_both_layers_are_independent_standard_normals(vae, images):
    n = 4000
    z = vae.encode(images).sample(n, seed=tf.constant([9, 10])).numpy().astype(np.float64)
    loc1, scale1 = numpy_normal(vae.encoder.q_z1, images.numpy().reshape(4, -1), 2)
    loc2, scale2 = numpy_conditional(vae.encoder.q_z2, z[..., :D1], 1)
    eps = np.concatenate([(z[..., :D1] - loc1) / scale1, (z[..., D1:] - loc2) / scale2], axis=-1).reshape(n, -1)
    assert np.abs(eps.mean(axis=0)).max() < 4 / np.sqrt(n)
    assert np.abs(eps.std(axis=0) - 1).max() < 0.05
    correlation = np.corrcoef(eps, rowvar=False) - np.eye(eps.shape[1])
    assert np.abs(correlation).max() < 4.5 / np.sqrt(n)


def test_prior_draws_z2_standard_normal_then_z1_from_the_conditional(vae):
    n = 4000
    z = vae.prior.sample(n, seed=tf.constant([11, 12])).numpy().astype(np.float64)
    assert z.shape == (n, D1 + D2)
    loc1, scale1 = numpy_conditional(vae.prior_module.p_z1, z[:, D1:], 2)
    eps = np.concatenate([(z[:, :D1] - loc1) / scale1, z[:, D1:]], axis=-1)
    assert np.abs(eps.mean(axis=0)).max() < 4 / np.sqrt(n)
    assert np.abs(eps.std(axis=0) - 1).max() < 0.05


def test_draws_follow_the_seed_and_the_sample_shape(vae, images):
    posterior = vae.encode(images)
    a = posterior.sample([2, 3], seed=tf.constant([1, 1]))
    assert a.shape == [2, 3, 4, D1 + D2]
    np.testing.assert_array_equal(a, posterior.sample([2, 3], seed=tf.constant([1, 1])))
    assert not np.allclose(a, posterior.sample([2, 3], seed=tf.constant([1, 2])))
    np.testing.assert_array_equal(model.draw_latents(posterior, [2, 3], tf.constant([1, 1])), a)


def test_mean_is_not_pretended_and_the_chained_mean_is_the_means_in_turn(vae, images):
    posterior = vae.encode(images)
    with pytest.raises(NotImplementedError, match="chained_mean"):
        posterior.mean()
    chained = posterior.chained_mean().numpy()
    loc1, _ = numpy_normal(vae.encoder.q_z1, images.numpy().reshape(4, -1), 2)
    loc2, _ = numpy_conditional(vae.encoder.q_z2, loc1, 1)
    np.testing.assert_allclose(chained, np.concatenate([loc1, loc2], axis=-1), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- in the objective
def test_decoder_reads_only_z1(vae):
    z = tf.random.stateless_normal([2, D1 + D2], seed=[1, 3])
    other_z2 = tf.concat([z[:, :D1], z[:, D1:] + 5.0], axis=-1)
    np.testing.assert_array_equal(vae.decode(z).mean(), vae.decode(other_z2).mean())
    np.testing.assert_array_equal(vae.decode(z).mean(), vae.decoder.p_x(z[:, :D1]).mean())


def test_negative_elbo_rate_is_log_q_minus_log_p_at_the_drawn_z(vae, images):
    seed = tf.constant([13, 14])
    terms = objectives.negative_elbo(vae, images, seed=seed)  # the analytic KL falls back to Monte Carlo
    z = model.draw_latents(vae.encode(images), [1], seed)[0]  # the same draw
    z64 = z.numpy().astype(np.float64)
    expected = sum(numpy_log_q(vae, images, z64)) - sum(numpy_log_p(vae, z64))
    np.testing.assert_allclose(terms.rate, expected, rtol=1e-4, atol=1e-4)
    monte_carlo = objectives.negative_elbo(vae, images, seed=seed, kl_estimator="monte_carlo")
    np.testing.assert_allclose(monte_carlo.rate, terms.rate, rtol=1e-6)
    by_layer = hierarchy.layer_rates(vae.encode(images), vae.prior, z)
    np.testing.assert_allclose(by_layer.z1 + by_layer.z2, terms.rate, rtol=1e-5, atol=1e-5)
    log_q1, log_q2 = numpy_log_q(vae, images, z64)
    log_p1, log_p2 = numpy_log_p(vae, z64)
    np.testing.assert_allclose(by_layer.z2, log_q2 - log_p2, rtol=1e-4, atol=1e-4)
    cross_entropy = -vae.decoder.p_x(z[:, :D1]).log_prob(images)
    # The objective decodes z with a leading draws axis ([1, b, ...]), this call without: another batch shape may
    # sum in another order; a sum of the pixels' terms (one sign) moves by up to ~pixels * 6e-8 relative.
    np.testing.assert_allclose(terms.distortion, cross_entropy, rtol=1e-5)


def test_model_vae_takes_the_prior_distribution_and_gives_the_same_terms(vae, images):
    plain = model.VAE(vae.encoder, vae.decoder, vae.prior_module())
    assert plain.latent_size == D1 + D2
    seed = tf.constant([15, 16])
    ours, theirs = objectives.negative_elbo(plain, images, seed=seed), objectives.negative_elbo(vae, images, seed=seed)
    for ours, theirs in zip(ours, theirs):  # the same ops on the same inputs, to a few float32 roundings (6e-8)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    bound = objectives.iwae_bound(plain, images, k=3, seed=seed)
    assert bound.shape == [4] and np.all(np.isfinite(bound))


def test_compiled_with_xla_scores_its_draws_as_eager_does(vae, images):
    # XLA's Philox stream differs from the TF kernel's (model.draw_latents' too), so compare at the compiled draws.
    @tf.function(jit_compile=True)
    def compiled(x):
        samples = objectives.importance_samples(vae, x, [2], tf.constant([17, 18]))
        terms = objectives.negative_elbo(vae, x, seed=tf.constant([17, 18]), num_samples=2, kl_estimator="monte_carlo")
        return samples.z, terms

    z, terms = compiled(images)
    posterior = vae.encode(images)
    np.testing.assert_allclose(terms.rate, tf.reduce_mean(posterior.log_prob(z) - vae.prior.log_prob(z), 0), atol=1e-4)
    np.testing.assert_allclose(terms.distortion, -tf.reduce_mean(vae.decode(z).log_prob(images), 0), rtol=1e-5)


def test_gradients_reach_every_weight(images):
    vae = make_vae(seed=3)
    with tf.GradientTape() as tape:
        loss = objectives.elbo_loss(vae, images, tf.constant([19, 20])).loss
    gradients = tape.gradient(loss, vae.trainable_variables)
    names = [v.name for v in vae.trainable_variables]
    assert len(names) == 2 * (3 + 2 + 3 + 2)  # q(z1|x), q(z2|z1), p(z1|z2), p(x|z1): layers incl. heads
    assert any("p_z1" in name for name in names)
    for name, gradient in zip(names, gradients):
        assert gradient is not None and np.any(gradient.numpy() != 0), name


def test_checkpoint_round_trip(tmp_path, images):
    trained, fresh = make_vae(seed=4), make_vae(seed=5)
    seed = tf.constant([21, 22])
    before = objectives.negative_elbo(trained, images, seed=seed)
    assert not np.allclose(objectives.negative_elbo(fresh, images, seed=seed).loss, before.loss)
    path = tf.train.Checkpoint(model=trained).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=fresh).restore(path).assert_consumed()
    for a, b in zip(objectives.negative_elbo(fresh, images, seed=seed), before):
        np.testing.assert_array_equal(a, b)


def test_burda_sizes_by_default():
    encoder, decoder, prior = hierarchy.build_two_layer((28, 28, 1))
    vae = TwoLayerVAE(encoder, decoder, prior)
    objectives.negative_elbo(vae, tf.zeros([1, 28, 28, 1]), seed=tf.constant([0, 0]))
    kernels = {v.name.split(":")[0]: tuple(v.shape) for v in vae.trainable_variables if v.name.endswith("/w:0")}
    assert kernels == {
        "hierarchical_encoder/q_z1/mlp/linear_0/w": (784, 200),
        "hierarchical_encoder/q_z1/mlp/linear_1/w": (200, 200),
        "hierarchical_encoder/q_z1/loc_and_log_variance/w": (200, 2 * 100),
        "hierarchical_encoder/q_z2/network/mlp/linear_0/w": (100, 100),
        "hierarchical_encoder/q_z2/network/mlp/linear_1/w": (100, 100),
        "hierarchical_encoder/q_z2/network/loc_and_log_variance/w": (100, 2 * 50),
        "hierarchical_prior/p_z1/network/mlp/linear_0/w": (50, 100),
        "hierarchical_prior/p_z1/network/mlp/linear_1/w": (100, 100),
        "hierarchical_prior/p_z1/network/loc_and_log_variance/w": (100, 2 * 100),
        "hierarchical_decoder/p_x/mlp/linear_0/w": (100, 200),
        "hierarchical_decoder/p_x/mlp/linear_1/w": (200, 200),
        "hierarchical_decoder/p_x/mlp/linear_2/w": (200, 784),
    }


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: hierarchy.HierarchicalEncoder((100,)), "latent_sizes must be two positive integers"),
        (lambda: hierarchy.HierarchicalEncoder((100, 0)), "latent_sizes must be two positive integers"),
        (lambda: hierarchy.HierarchicalEncoder((3, 2, 1)), "latent_sizes must be two positive integers"),
        (lambda: hierarchy.HierarchicalEncoder((3.5, 2)), "latent_sizes must be two positive integers"),
        (lambda: hierarchy.HierarchicalEncoder((3, 2), ((4,),)), "hidden_sizes must give two"),
        (lambda: hierarchy.HierarchicalEncoder((3, 2), ((4,), ())), "hidden_sizes must list one or more"),
        (lambda: hierarchy.HierarchicalEncoder((3, 2), ((4, -1), (4,))), r"hidden_sizes\[0\] must list"),
        (lambda: hierarchy.HierarchicalPrior((0, 2)), "latent_sizes must be two positive integers"),
        (lambda: hierarchy.HierarchicalPrior((3, 2), ()), "hidden_sizes must list one or more"),
        (lambda: hierarchy.HierarchicalDecoder((2, 2, 1), (3,)), "latent_sizes must be two positive integers"),
        (lambda: hierarchy.HierarchicalDecoder((2, 2, 1), (3, 2))(tf.zeros([1, 4])), "z must end in d1 \\+ d2 = 5"),
        (lambda: hierarchy.HierarchicalDecoder((2, 2), (3, 2)), "output_shape must be"),
        (lambda: hierarchy.TwoLayerNormal(tfd.Normal(0.0, 1.0), lambda a: a, 2), "first must be a diagonal Normal"),
        (
            lambda: hierarchy.TwoLayerNormal(tfd.Independent(tfd.Normal(tf.zeros(2), 1.0), 1), lambda a: a, 0),
            "second_size must be a positive integer, got 0",
        ),
    ],
)
def test_bad_sizes_raise_value_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_mismatched_layers_raise_value_errors(vae, images):
    posterior = vae.encode(images)
    with pytest.raises(ValueError, match="z must end in 5"):
        posterior.log_prob(tf.zeros([4, 6]))
    other = hierarchy.HierarchicalPrior((2, 3), (4,))()
    with pytest.raises(ValueError, match="split z differently"):
        hierarchy.layer_rates(posterior, other, tf.zeros([4, 5]))
    with pytest.raises(ValueError, match="needs two TwoLayerNormal"):
        hierarchy.layer_rates(posterior, model.standard_normal_prior(5), tf.zeros([4, 5]))
    with pytest.raises(ValueError, match="second\\(a\\) must be a diagonal Normal"):
        hierarchy.TwoLayerNormal(
            tfd.Independent(tfd.Normal(tf.zeros(2), 1.0), 1), lambda a: tfd.MultivariateNormalDiag(a), 2
        ).log_prob(tf.zeros([4]))

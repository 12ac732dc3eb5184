"""Learned priors (tfvae.priors) against independent NumPy/SciPy computations."""

import re

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
from scipy import special, stats

from tfvae import config, model, nets, objectives
from tfvae.priors import MixturePrior, VampPrior

IMAGE_SHAPE = (4, 4, 1)


def mixture_log_prob(z, log_weights, loc, scale):
    """log sum_k w_k prod_d N(z_d; loc_kd, scale_kd), by SciPy: z [..., d], loc and scale [K, d] -> [...]."""
    z = np.asarray(z, np.float64)[..., None, :]  # [..., 1, d]
    per_component = stats.norm.logpdf(z, np.asarray(loc, np.float64), np.asarray(scale, np.float64)).sum(-1)
    return special.logsumexp(per_component + np.asarray(log_weights, np.float64), axis=-1)


def diagonal_normal_log_prob(z, loc, scale):
    z, loc, scale = (np.asarray(value, np.float64) for value in (z, loc, scale))
    return stats.norm.logpdf(z, loc, scale).sum(-1)


def components_of(encoder, pseudo_inputs):
    """loc and scale [K, d] of q(z | u_k), encoding each pseudo-input on its own."""
    pseudo_inputs = tf.constant(pseudo_inputs, tf.float32)
    posteriors = [encoder(pseudo_inputs[k : k + 1]).distribution for k in range(len(pseudo_inputs))]
    return np.concatenate([p.loc.numpy() for p in posteriors]), np.concatenate([p.scale.numpy() for p in posteriors])


def make_prior(kind, latent_size=2, seed=0):
    """A prior module (a VampPrior with its own encoder), built, and moved away from its start values."""
    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    if kind == "mixture":
        prior = MixturePrior(latent_size, 3)
        prior.logits.assign(rng.normal(size=3).astype(np.float32))
        prior.loc.assign(rng.normal(scale=1.5, size=[3, latent_size]).astype(np.float32))
        prior.raw_scale.assign(rng.normal(size=[3, latent_size]).astype(np.float32))
    else:
        prior = VampPrior(nets.Encoder([8], latent_size=latent_size), IMAGE_SHAPE, 3)
        prior.raw_pseudo_inputs.assign(rng.uniform(-0.25, 1.25, size=[3, *IMAGE_SHAPE]).astype(np.float32))
    prior()  # builds the encoder
    return prior


# --------------------------------------------------------------------------- MixturePrior
def test_mixture_log_prob_is_logsumexp_over_its_weighted_gaussians():
    prior_module = make_prior("mixture", latent_size=3)
    prior = prior_module()
    assert prior.event_shape == [3] and prior.batch_shape == []
    z = tf.random.stateless_normal([2, 5, 3], seed=[1, 2]) * 2.0
    expected = mixture_log_prob(
        z, special.log_softmax(prior_module.logits.numpy()), prior_module.loc.numpy(),
        np.logaddexp(0.0, prior_module.raw_scale.numpy()) + prior_module.min_scale,
    )
    assert prior.log_prob(z).shape == [2, 5]
    np.testing.assert_allclose(prior.log_prob(z).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_mixture_starts_with_equal_weights_unit_scales_and_seeded_locations():
    tf.random.set_seed(3)
    first = MixturePrior(4, 5)
    tf.random.set_seed(3)
    again = MixturePrior(4, 5)
    tf.random.set_seed(4)
    other = MixturePrior(4, 5)
    np.testing.assert_allclose(first.mixture_weights.numpy(), np.full(5, 0.2), rtol=1e-6)
    np.testing.assert_allclose(first.scale.numpy(), np.ones([5, 4]), rtol=1e-6)
    assert first.loc.shape == [5, 4]
    np.testing.assert_array_equal(first.loc.numpy(), again.loc.numpy())
    assert not np.allclose(first.loc.numpy(), other.loc.numpy())
    assert 0.1 < first.loc.numpy().std() < 1.5  # N(0, 0.5^2): distinct but overlapping components
    assert {v.name.split("/")[-1].split(":")[0] for v in first.trainable_variables} == {"logits", "loc", "raw_scale"}


def test_mixture_scale_is_floored_and_log_prob_stays_finite():
    prior_module = MixturePrior(2, 2, min_scale=1e-2)
    prior_module.raw_scale.assign(tf.fill([2, 2], -1e4))
    np.testing.assert_allclose(prior_module.scale.numpy(), np.full([2, 2], 1e-2), rtol=1e-6)
    log_prob = prior_module().log_prob(prior_module.loc).numpy()
    assert np.all(np.isfinite(log_prob))
    # At a component's centre, with the other component's weight 1/2: log(1/2) - 2 log(1e-2 sqrt(2 pi)), or more.
    assert np.all(log_prob >= np.log(0.5) - 2 * np.log(1e-2 * np.sqrt(2 * np.pi)) - 1e-3)


def test_mixture_samples_have_the_mixtures_mean_and_variance():
    prior_module = make_prior("mixture", latent_size=2)
    weights = special.softmax(prior_module.logits.numpy())[:, None]
    loc, scale = prior_module.loc.numpy(), prior_module.scale.numpy()
    mean = (weights * loc).sum(0)
    variance = (weights * (scale**2 + loc**2)).sum(0) - mean**2
    np.testing.assert_allclose(prior_module().mean().numpy(), mean, rtol=1e-5, atol=1e-6)
    n = 20_000
    z = prior_module().sample(n, seed=tf.constant([3, 4])).numpy().astype(np.float64)
    assert z.shape == (n, 2)
    assert np.all(np.abs(z.mean(0) - mean) < 4 * np.sqrt(variance / n))
    squares = (z - z.mean(0)) ** 2
    assert np.all(np.abs(squares.mean(0) - variance) < 4 * squares.std(0) / np.sqrt(n))


# --------------------------------------------------------------------------- VampPrior
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_vamp_log_prob_is_log_mean_of_the_posteriors_of_each_pseudo_input(architecture):
    tf.random.set_seed(2)
    if architecture == "mlp":
        encoder = nets.Encoder([8], latent_size=3)
    else:
        encoder = nets.ConvEncoder([2], [8], latent_size=3)
    prior_module = VampPrior(encoder, IMAGE_SHAPE, 5)
    raw = np.random.default_rng(2).uniform(-0.5, 1.5, size=[5, *IMAGE_SHAPE]).astype(np.float32)
    prior_module.raw_pseudo_inputs.assign(raw)
    prior = prior_module()
    assert prior.event_shape == [3] and prior.batch_shape == []
    z = tf.random.stateless_normal([6, 3], seed=[5, 6])
    # The pseudo-inputs are the raw values clipped to [0, 1] (the paper's hardtanh), each encoded on its own.
    loc, scale = components_of(encoder, np.clip(raw, 0.0, 1.0))
    expected = special.logsumexp(
        [diagonal_normal_log_prob(z, loc[k], scale[k]) for k in range(5)], axis=0
    ) - np.log(5)
    np.testing.assert_allclose(prior.log_prob(z).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_vamp_starts_from_the_papers_pseudo_inputs_and_is_seeded():
    tf.random.set_seed(7)
    prior_module = VampPrior(nets.Encoder([8], latent_size=2), (28, 28, 1), 50)
    raw = prior_module.raw_pseudo_inputs.numpy()
    assert raw.shape == (50, 28, 28, 1)
    # N(0.05, 0.01^2) (github.com/jmtomczak/vae_vampprior, utils/load_data.py, binary MNIST).
    assert abs(raw.mean() - 0.05) < 4 * 0.01 / np.sqrt(raw.size) and abs(raw.std() - 0.01) < 2e-4
    tf.random.set_seed(7)
    np.testing.assert_array_equal(VampPrior(nets.Encoder([8], latent_size=2), (28, 28, 1), 50).raw_pseudo_inputs, raw)


class Holder(snt.Module):
    """A model holding the encoder both directly and through its VampPrior, as a VAE will."""

    def __init__(self, encoder, prior):
        super().__init__()
        self.encoder, self.prior = encoder, prior


def test_vamp_gradients_reach_the_pseudo_inputs_and_the_shared_encoder():
    prior_module = make_prior("vamp", latent_size=2, seed=8)
    encoder = prior_module.encoder
    assert set(map(id, prior_module.trainable_variables)) == {
        id(prior_module.raw_pseudo_inputs), *map(id, encoder.trainable_variables)
    }
    held = Holder(encoder, prior_module).trainable_variables
    assert len(held) == len(set(map(id, held))) == len(prior_module.trainable_variables)  # shared, not duplicated
    z = tf.random.stateless_normal([4, 2], seed=[1, 9])
    variables = prior_module.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        total = tf.reduce_sum(prior_module().log_prob(z))
        # Independently: log (1/K) sum_k q(z | u_k), each u_k = hardtanh(raw_k) encoded on its own.
        per_input = [
            encoder(tf.clip_by_value(prior_module.raw_pseudo_inputs[k : k + 1], 0.0, 1.0)).log_prob(z) for k in range(3)
        ]
        reference = tf.reduce_sum(tf.reduce_logsumexp(tf.stack(per_input), axis=0) - np.log(3.0))
    gradients = tape.gradient(total, variables)
    expected = tape.gradient(reference, variables)
    for variable, gradient, want in zip(variables, gradients, expected):
        assert gradient is not None and np.any(gradient.numpy() != 0), variable.name
        np.testing.assert_allclose(gradient.numpy(), want.numpy(), rtol=1e-4, atol=1e-6, err_msg=variable.name)
    raw = prior_module.raw_pseudo_inputs.numpy()
    d_raw = gradients[[id(v) for v in variables].index(id(prior_module.raw_pseudo_inputs))].numpy()
    outside = (raw < 0) | (raw > 1)
    assert outside.any() and np.all(d_raw[outside] == 0)  # the clip passes no gradient outside [0, 1]
    assert np.mean(d_raw[~outside] != 0) > 0.9


# --------------------------------------------------------------------------- both
@pytest.mark.parametrize("jit_compile", [False, True], ids=["function", "xla"])
@pytest.mark.parametrize("kind", ["mixture", "vamp"])
def test_log_prob_sample_and_gradients_inside_tf_function(kind, jit_compile):
    prior_module = make_prior(kind, latent_size=2, seed=9)
    z = tf.random.stateless_normal([5, 2], seed=[2, 3])

    def log_prob_and_gradients(z):
        with tf.GradientTape() as tape:
            log_prob = prior_module().log_prob(z)
            total = tf.reduce_sum(log_prob)
        return log_prob, tape.gradient(total, prior_module.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def compiled(z, seed):
        return log_prob_and_gradients(z), prior_module().sample(7, seed=seed)

    (log_prob, gradients), sample = compiled(z, tf.constant([1, 2]))
    eager_log_prob, eager_gradients = log_prob_and_gradients(z)
    np.testing.assert_allclose(log_prob.numpy(), eager_log_prob.numpy(), rtol=1e-5, atol=1e-5)
    for gradient, eager in zip(gradients, eager_gradients):
        np.testing.assert_allclose(gradient.numpy(), eager.numpy(), rtol=1e-4, atol=1e-5)
    assert sample.shape == [7, 2] and np.all(np.isfinite(sample.numpy()))
    np.testing.assert_array_equal(compiled(z, tf.constant([1, 2]))[1], sample)  # stateless: the seed decides
    assert not np.allclose(compiled(z, tf.constant([1, 3]))[1], sample)


class PriorModuleVAE:
    """A tfvae VAE's encoder and decoder with `prior` evaluated from a module: the interface VAE will have."""

    def __init__(self, vae, prior_module):
        self.vae, self.prior_module = vae, prior_module

    def encode(self, images):
        return self.vae.encode(images)

    def decode(self, z):
        return self.vae.decode(z)

    @property
    def prior(self):
        return self.prior_module()


@pytest.mark.parametrize("kind", ["mixture", "vamp"])
def test_elbo_rate_is_the_monte_carlo_log_ratio_at_the_drawn_z(kind):
    tf.random.set_seed(10)
    vae = model.build(config.ModelConfig(hidden_sizes=(8,), latent_size=2), IMAGE_SHAPE)
    if kind == "mixture":
        prior_module = make_prior("mixture", latent_size=2, seed=10)
    else:  # the VAE's own encoder: the prior moves with it
        prior_module = VampPrior(vae.encoder, IMAGE_SHAPE, 3)
        prior_module()
        # Every fresh posterior is about N(0, I); shift all of them, so that this prior is far from N(0, I).
        vae.encoder._head.b.assign([1.0, -1.0, -1.0, -1.5])  # loc (1, -1), log-variance (-1, -1.5)
    stand_in = PriorModuleVAE(vae, prior_module)
    images = tf.cast(tf.random.stateless_uniform([3, *IMAGE_SHAPE], seed=[3, 4]) > 0.5, tf.float32)

    def prior_log_prob(z):  # SciPy's mixture log-density with the module's own parameters
        if kind == "mixture":
            log_weights = special.log_softmax(prior_module.logits.numpy())
            return mixture_log_prob(z, log_weights, prior_module.loc.numpy(), prior_module.scale.numpy())
        loc, scale = components_of(vae.encoder, prior_module.pseudo_inputs.numpy())
        return mixture_log_prob(z, np.full(3, -np.log(3.0)), loc, scale)

    posterior = vae.encode(images)
    q_loc, q_scale = posterior.distribution.loc.numpy(), posterior.distribution.scale.numpy()
    seed = tf.constant([7, 8])
    z = model.draw_latents(posterior, [1], seed)[0].numpy()  # the draw negative_elbo makes with this seed
    at_z = diagonal_normal_log_prob(z, q_loc, q_scale) - prior_log_prob(z)
    for estimator in ("analytic", "monte_carlo"):  # no analytic KL to a mixture: both are log q - log p at z
        terms = objectives.negative_elbo(stand_in, images, seed=seed, kl_estimator=estimator)
        np.testing.assert_allclose(terms.rate.numpy(), at_z, rtol=1e-4, atol=1e-4, err_msg=estimator)
        np.testing.assert_allclose(terms.loss.numpy(), (terms.distortion + terms.rate).numpy(), rtol=1e-6)

    # Averaged over many draws, the rate approaches a high-sample estimate of KL(q || p).
    n, n_high = 2_000, 100_000
    averaged = objectives.negative_elbo(stand_in, images, seed=seed, num_samples=n, kl_estimator="monte_carlo")
    z_high = posterior.sample(n_high, seed=tf.constant([11, 12])).numpy()
    log_ratio = diagonal_normal_log_prob(z_high, q_loc, q_scale) - prior_log_prob(z_high)  # [n_high, 3]
    high, spread = log_ratio.mean(0), log_ratio.std(0)
    tolerance = 4 * spread * np.sqrt(1 / n + 1 / n_high)
    assert np.all(np.abs(averaged.rate.numpy() - high) < tolerance)
    # ... and the test can tell this prior from N(0, I): the KL to the standard Normal is elsewhere.
    standard = 0.5 * np.sum(q_scale**2 + q_loc**2 - 1 - 2 * np.log(q_scale), axis=-1)
    assert np.all(np.abs(standard - high) > 3 * tolerance)


@pytest.mark.parametrize("kind", ["mixture", "vamp"])
def test_checkpoint_saves_and_restores_the_variables(kind, tmp_path):
    saved = make_prior(kind, seed=11)
    path = tf.train.Checkpoint(prior=saved).write(str(tmp_path / "prior"))
    restored = make_prior(kind, seed=12)  # a fresh module (and, for VampPrior, a fresh encoder)
    z = tf.random.stateless_normal([4, 2], seed=[4, 5])
    assert not np.allclose(restored().log_prob(z), saved().log_prob(z))
    tf.train.Checkpoint(prior=restored).read(path).assert_consumed()
    assert len(saved.variables) == len(restored.variables) == (3 if kind == "mixture" else 5)
    for before, after in zip(saved.variables, restored.variables):
        np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=before.name)
    np.testing.assert_array_equal(restored().log_prob(z), saved().log_prob(z))


def encoder():
    return nets.Encoder([4], latent_size=2)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: MixturePrior(0, 3), "latent_size must be a positive integer, got 0"),
        (lambda: MixturePrior(2.5, 3), "latent_size must be a positive integer, got 2.5"),
        (lambda: MixturePrior(2, -1), "num_components must be a positive integer, got -1"),
        (lambda: MixturePrior(2, True), "num_components must be a positive integer, got True"),
        (lambda: MixturePrior(2, 3, min_scale=0.0), "min_scale must be a positive finite number, got 0.0"),
        (lambda: MixturePrior(2, 3, init_loc_stddev=-1.0), "init_loc_stddev must be a non-negative finite number"),
        (lambda: VampPrior(encoder(), IMAGE_SHAPE, 0), "num_pseudo_inputs must be a positive integer, got 0"),
        (lambda: VampPrior(encoder(), (4, 4), 3), "image_shape must be [height, width, channels] of positive integers"),
        (lambda: VampPrior(encoder(), (4, 0, 1), 3), "image_shape must be [height, width, channels]"),
        (lambda: VampPrior(None, IMAGE_SHAPE, 3), "encoder must be callable (images -> q(z|x)), got NoneType"),
        (lambda: VampPrior(encoder(), IMAGE_SHAPE, 3, init_stddev=-0.1), "init_stddev must be a non-negative"),
        (lambda: VampPrior(encoder(), IMAGE_SHAPE, 3, init_mean=float("nan")), "init_mean must be a finite"),
    ],
)
def test_bad_arguments_name_the_field(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_an_encoder_without_a_batch_of_posteriors_is_refused():
    prior_module = VampPrior(lambda images: model.standard_normal_prior(2), IMAGE_SHAPE, 3)
    with pytest.raises(ValueError, match=re.escape("encoder must return q(z|x) with batch [K] and event [latent]")):
        prior_module()

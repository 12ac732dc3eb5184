"""Model families as config options: learned priors, two stochastic layers, DReG gradients, beta-TCVAE."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import cli, config, hierarchy, model, objectives, priors, rundir
from tfvae import step as step_lib

tfd = tfp.distributions
IMAGE_SHAPE = (6, 6, 1)


def images(n: int = 8, seed: int = 3) -> tf.Tensor:
    return tf.cast(tf.random.stateless_uniform([n, *IMAGE_SHAPE], seed=[seed, 4]) > 0.5, tf.float32)


def built(**changes) -> model.VAE:
    tf.random.set_seed(1)
    settings = config.ModelConfig(hidden_sizes=(16,), latent_size=3, top_latent_size=2, top_hidden_sizes=(8,),
                                  **changes)
    vae = model.build(settings, IMAGE_SHAPE)
    rundir.create_variables(vae, IMAGE_SHAPE)
    return vae


@pytest.mark.parametrize("changes, part", [
    ({"prior": "mixture", "prior_components": 4}, priors.MixturePrior),
    ({"prior": "vamp", "prior_components": 5}, priors.VampPrior),
    ({"architecture": "two_layer"}, hierarchy.HierarchicalPrior),
])
def test_each_family_is_a_config_option_whose_prior_learns_and_whose_rate_is_monte_carlo(changes, part):
    vae = built(**changes)
    assert isinstance(vae.prior_part, part) and vae.prior.event_shape == [vae.latent_size]
    owned = {v.ref() for v in vae.prior_part.trainable_variables}
    assert owned and owned <= {v.ref() for v in vae.trainable_variables}  # trained with the model
    samples = objectives.importance_samples(vae, images(), [1], tf.constant([1, 2]))
    with pytest.raises(NotImplementedError):  # no closed-form KL to these priors: the rate is log q - log p at z
        tfd.kl_divergence(samples.posterior, samples.prior)
    terms = objectives.negative_elbo(vae, images(), seed=tf.constant([1, 2]))
    np.testing.assert_allclose(terms.rate, -samples.log_ratio[0], rtol=1e-5)


@pytest.mark.parametrize("posterior", ["iaf", "coupling"])
def test_a_flow_posterior_is_a_config_option_and_its_log_q_at_its_draws_needs_no_inverse(posterior):
    vae = built(posterior=posterior)
    samples = objectives.importance_samples(vae, images(), [2], tf.constant([1, 2]))
    assert model.is_transformed(samples.posterior)
    copied = tf.identity(samples.z) + 0.0  # the same values, unknown to the bijector's cache: inverted
    np.testing.assert_allclose(samples.posterior.log_prob(samples.z), samples.posterior.log_prob(copied), rtol=1e-4,
                               atol=1e-4)
    terms = objectives.negative_elbo(vae, images(), seed=tf.constant([1, 2]), num_samples=2)  # rate over both draws
    np.testing.assert_allclose(terms.rate, -tf.reduce_mean(samples.log_ratio, axis=0), rtol=1e-5)


def test_the_vampprior_runs_the_encoder_on_its_pseudo_inputs_once_a_loss(monkeypatch):
    vae = built(prior="vamp", prior_components=5)
    calls = []
    encode = type(vae.encoder).__call__

    def counted(encoder, x):
        calls.append(int(x.shape[0]))
        return encode(encoder, x)

    monkeypatch.setattr(type(vae.encoder), "__call__", counted)
    objectives.negative_elbo(vae, images(), seed=tf.constant([1, 2]))
    assert sorted(calls) == [5, 8]  # the pseudo-inputs once, the images once


def reference_dreg_gradients(vae, batch, seed, k, kl_weight=1.0):
    """DReG by its definition, with two tapes: the encoder's pathwise gradient weighted (1 - beta) v_i + beta v_i^2
    (v_i^2 at beta = 1), the decoder's IWAE one; beta is the KL weight inside log w."""
    with tf.GradientTape(persistent=True) as tape:
        posterior = vae.encode(batch)
        z = model.draw_latents(posterior, [1, k], seed)
        held = tfd.Independent(tfd.Normal(tf.stop_gradient(posterior.distribution.loc),
                                          tf.stop_gradient(posterior.distribution.scale)), 1)
        log_weights = vae.decode(z).log_prob(batch) + kl_weight * (vae.prior.log_prob(z) - held.log_prob(z))
        v = tf.stop_gradient(tf.nn.softmax(log_weights, axis=1))
        pathwise = (1 - kl_weight) * v + kl_weight * v**2
        encoder_objective = -tf.reduce_mean(tf.reduce_sum(pathwise * log_weights, axis=1))
        decoder_objective = -tf.reduce_mean(tf.reduce_sum(v * log_weights, axis=1))
    return (tape.gradient(encoder_objective, vae.encoder.trainable_variables),
            tape.gradient(decoder_objective, vae.decoder.trainable_variables))


@pytest.mark.parametrize("kl_weight", [1.0, 0.3])  # 0.3: a KL warm-up's weight
def test_dreg_gradients_equal_their_definition_and_the_loss_keeps_the_iwae_value(kl_weight):
    vae, batch, seed, k = built(), images(), tf.constant([5, 6]), 7
    loss = {}
    gradients = {}
    for name in ("plain", "dreg"):
        with tf.GradientTape() as tape:
            loss[name] = objectives.iwae_loss(vae, batch, seed, k=k, gradient=name, kl_weight=kl_weight).loss
        gradients[name] = tape.gradient(loss[name], vae.encoder.trainable_variables + vae.decoder.trainable_variables)
    np.testing.assert_allclose(loss["dreg"], loss["plain"], rtol=1e-5)
    encoder_reference, decoder_reference = reference_dreg_gradients(vae, batch, seed, k, kl_weight)
    n = len(vae.encoder.trainable_variables)
    for ours, reference in zip(gradients["dreg"], [*encoder_reference, *decoder_reference]):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6)
    for ours, plain in zip(gradients["dreg"][n:], gradients["plain"][n:]):  # the decoder's: the IWAE gradient
        np.testing.assert_allclose(ours, plain, rtol=1e-4, atol=1e-6)
    assert not np.allclose(gradients["dreg"][0], gradients["plain"][0], rtol=1e-3)  # the encoder's differ


class OneDimensional:
    """p(z) = N(0, 1), p(x|z) = N(x; z, 1) on a 1x1 image, q(z|x) = N(mu, exp(log_scale)^2) off the true posterior."""

    def __init__(self):
        self.loc, self.log_scale = tf.Variable([0.3]), tf.Variable([-0.5])
        self.prior = tfd.Independent(tfd.Normal(tf.zeros([1]), 1.0), 1)

    def encode(self, images):
        ones = tf.ones([tf.shape(images)[0], 1])
        return tfd.Independent(tfd.Normal(self.loc * ones, tf.exp(self.log_scale) * ones), 1)

    def decode(self, z):
        return tfd.Independent(tfd.Normal(z[..., None, None], 1.0), 3)


@pytest.mark.parametrize("kl_weight", [1.0, 0.3])
def test_dreg_and_plain_iwae_gradients_agree_in_expectation(kl_weight):
    """DReG is another estimator of the same gradient: averaged over 200,000 bounds of k = 5, the encoder's
    gradients agree to Monte Carlo error (standard error ~0.002), with a KL weight below 1 as in a warm-up too
    (where a surrogate weighted v_i^2 alone was 0.5 off on d/d loc)."""
    toy, x = OneDimensional(), tf.constant([[[[1.5]]]])
    means = {}
    for name in ("plain", "dreg"):
        with tf.GradientTape() as tape:
            loss = objectives.iwae_loss(toy, x, tf.constant([3, 4]), k=5, num_samples=200_000, kl_weight=kl_weight,
                                        gradient=name).loss
        means[name] = np.array([float(g[0]) for g in tape.gradient(loss, [toy.loc, toy.log_scale])])
    assert np.abs(means["plain"]).min() > 0.05  # q is off: a gradient to agree on
    np.testing.assert_allclose(means["dreg"], means["plain"], atol=0.015)


def test_dreg_is_a_training_option_of_the_iwae_objective():
    settings = config.TrainConfig(objective="iwae", iwae_k=4, gradient="dreg")
    terms = step_lib.training_loss(settings)(built(), images(), tf.constant([1, 2]), 0)
    assert np.isfinite(terms.loss.numpy())
    with pytest.raises(ValueError, match="DReG gradients need a Normal posterior"):
        objectives.iwae_loss(built(architecture="two_layer"), images(), tf.constant([1, 2]), k=3, gradient="dreg")


def test_the_tc_weight_adds_its_multiple_of_the_total_correlation_to_the_loss():
    vae, batch, seed = built(), images(32), tf.constant([2, 3])
    plain = step_lib.training_loss(config.TrainConfig())(vae, batch, seed, 0)
    weighted = step_lib.training_loss(config.TrainConfig(tc_weight=6.0))(vae, batch, seed, 0)
    samples = objectives.importance_samples(vae, batch, [1], seed)
    tc = objectives.total_correlation(samples.posterior, samples.z)
    np.testing.assert_allclose(weighted.loss, plain.loss + 5.0 * tc, rtol=1e-5)
    np.testing.assert_allclose(weighted.rate, plain.rate, rtol=1e-6)  # logged plain


@pytest.mark.parametrize("step, ramp", [(0, 0.0), (2500, 0.25), (20_000, 1.0)])
def test_a_kl_warm_up_ramps_the_total_correlation_with_the_rest_of_the_rate(step, ramp):
    vae, batch, seed = built(), images(32), tf.constant([2, 3])
    schedule = dict(kl_schedule="linear", warmup_steps=10_000, beta=2.0)
    plain = step_lib.training_loss(config.TrainConfig(**schedule))(vae, batch, seed, step)
    weighted = step_lib.training_loss(config.TrainConfig(tc_weight=6.0, **schedule))(vae, batch, seed, step)
    samples = objectives.importance_samples(vae, batch, [1], seed)
    tc = objectives.total_correlation(samples.posterior, samples.z)
    np.testing.assert_allclose(plain.loss, plain.distortion + 2.0 * ramp * plain.rate, rtol=1e-5)
    np.testing.assert_allclose(weighted.loss, plain.loss + 2.0 * ramp * 5.0 * tc, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("field, value, words", [
    ("model.prior", "flow", "model.prior must be one of normal, mixture, vamp"),
    ("model.prior_components", 0, "model.prior_components must be a positive integer"),
    ("train.gradient", "dreg", "train.gradient=dreg is a gradient of the IWAE bound"),
    ("train.tc_weight", -1, "train.tc_weight must be a number >= 0"),
    ("model.posterior", "planar", "model.posterior must be one of normal, iaf, coupling"),
    ("model.flow_steps", 0, "model.flow_steps must be a positive integer"),
])
def test_family_options_that_do_not_fit_end_in_one_line_naming_the_field(field, value, words):
    with pytest.raises(config.ConfigError, match=words):
        config.override(config.preset("tiny"), {field: value})


@pytest.mark.parametrize("changes, words", [
    ({"model.architecture": "two_layer", "model.prior": "vamp"}, "two_layer has its own prior"),
    ({"model.architecture": "two_layer", "train.free_bits": 0.5}, "need a factorised posterior"),
    ({"model.prior": "mixture", "train.free_bits": 0.5}, "free_bits needs a factorised prior"),
    ({"model.architecture": "two_layer", "train.objective": "iwae", "train.gradient": "dreg"}, "dreg needs a diag"),
    ({"model.posterior": "iaf", "model.deterministic_encoder": True}, "model.posterior=iaf is a flow"),
    ({"model.posterior": "iaf", "train.free_bits": 0.5}, "need a factorised posterior"),
    ({"model.posterior": "coupling", "model.latent_size": 1}, "latent_size must be >= 2"),
])
def test_families_that_do_not_combine_are_refused(changes, words):
    with pytest.raises(config.ConfigError, match=words):
        config.override(config.preset("tiny"), changes)


# Each family through the command line, 12 to 30 s each here, runs with -m slow (the VampPrior first: a learned
# prior whose figure kl_per_dimension does not apply, so the note that says why is checked too); each family's own
# parts are tested above and in test_family_runs, and the default model's command line in test_cli.
@pytest.mark.parametrize("family", [
    pytest.param(["model.prior=vamp", "model.prior_components=4"], marks=pytest.mark.slow),
    pytest.param(["model.prior=mixture", "model.prior_components=3"], marks=pytest.mark.slow),
    pytest.param(["model.architecture=two_layer", "model.top_latent_size=2", "model.top_hidden_sizes=[8]"],
                 marks=pytest.mark.slow),
    pytest.param(["train.objective=iwae", "train.iwae_k=3", "train.gradient=dreg"], marks=pytest.mark.slow),
    pytest.param(["model.posterior=iaf", "model.flow_steps=2"], marks=pytest.mark.slow),
    pytest.param(["model.posterior=coupling"], marks=pytest.mark.slow),
])
def test_every_family_trains_evaluates_draws_and_exports_from_the_command_line(family, mnist_data_dir, tmp_path,
                                                                                capsys):
    run_dir = tmp_path / "run"
    sets = [arg for value in family for arg in ("--set", value)]
    assert cli.main(["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", str(run_dir),
                     "--no-progress", "--no-tensorboard", *sets]) == 0
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"loss_curves.png", "reconstructions.png", "latent_grid.png", "anomaly_scores.png"} <= figures
    factorised = family[0].startswith("train.")  # the model's q and p are still diagonal Normals
    assert ("kl_per_dimension.png" in figures) == factorised
    note = "tfvae: warning: kl_per_dimension: not drawn: the posterior or prior does not factorise"
    assert (note in capsys.readouterr().err) != factorised  # a figure that does not apply says why
    assert cli.main(["evaluate", str(run_dir), "--k", "20", "--limit", "10", "--no-progress"]) == 0
    numbers = json.loads((run_dir / "eval.json").read_text())
    assert np.isfinite(numbers["nll"]) and numbers["nll"] < numbers["negative_elbo"] + 1.0  # IS is (nearly) tighter
    assert cli.main(["export", str(run_dir), str(tmp_path / "export")]) == 0
    exported = tf.saved_model.load(str(tmp_path / "export"))
    assert exported.elbo(tf.zeros([2, 28, 28, 1]), [1, 2])["negative_elbo"].shape == [2]

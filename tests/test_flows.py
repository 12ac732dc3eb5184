"""Flow posteriors: log q(z|x) against the explicit Jacobian, identity start, reparameterised stateless draws,
the ELBO's Monte Carlo rate, TFP's cache inside tf.function, XLA, checkpoints, bad arguments."""

import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import flows, model, nets, objectives, precision

tfd = tfp.distributions

LATENT, BATCH = 3, 2
SEED = tf.constant([7, 11])


def tiny_images(batch=BATCH, seed=0):
    return tf.round(tf.random.stateless_uniform([batch, 4, 4, 1], seed=[seed, 1]))


def flow_encoder(flow, num_steps=2, **kwargs):
    return flows.FlowEncoder([8], LATENT, num_steps, flow=flow, context_size=4, flow_hidden_units=[6], **kwargs)


def flow_variables(encoder):
    return [v for network in encoder.step_networks for v in network.variables]


def perturb(encoder, seed=5, scale=0.5):
    """Every flow weight (masked entries included) to a random value: the flow is no longer the identity."""
    for index, variable in enumerate(flow_variables(encoder)):
        variable.assign(scale * tf.random.stateless_normal(variable.shape, seed=[seed, index]))


def explicit_log_q(posterior, eps):
    """z = flow(eps) and log q0(eps) - log|det dz/deps| with the Jacobian by GradientTape and slogdet, eps [b, d]."""
    with tf.GradientTape() as tape:
        tape.watch(eps)
        z = posterior.bijector.forward(eps)
    jacobian = tape.batch_jacobian(z, eps)  # [b, d, d]; example b's z depends only on its own eps
    _, log_abs_det = tf.linalg.slogdet(tf.cast(jacobian, tf.float64))
    return z, posterior.distribution.log_prob(eps) - tf.cast(log_abs_det, tf.float32)


@pytest.mark.parametrize("flow", flows.FLOWS)
def test_log_q_is_the_base_density_minus_the_explicit_log_determinant(flow):
    encoder = flow_encoder(flow)
    encoder(tiny_images())
    perturb(encoder)
    posterior = encoder(tiny_images())
    eps = posterior.distribution.sample(seed=SEED)
    z, expected = explicit_log_q(posterior, eps)
    # The flow is far from the identity, so the check below can fail.
    assert np.abs(expected - posterior.distribution.log_prob(z)).min() > 0.1

    drawn = posterior.sample(seed=SEED)  # the same seed draws the same eps inside
    np.testing.assert_allclose(drawn, z, atol=1e-5)
    np.testing.assert_allclose(posterior.log_prob(drawn), expected, atol=1e-4)  # read from the forward pass
    fresh = tf.constant(z.numpy())  # a new tensor: TFP inverts the flow
    np.testing.assert_allclose(posterior.log_prob(fresh), expected, atol=1e-4)
    back = posterior.bijector.inverse(fresh)
    np.testing.assert_allclose(back, eps, atol=1e-4)
    np.testing.assert_allclose(posterior.bijector.forward(tf.constant(back.numpy())), z, atol=1e-4)


@pytest.mark.parametrize("flow", flows.FLOWS)
def test_each_step_keeps_its_triangular_jacobian_whatever_its_weights(flow):
    # A MADE masks in its forward pass (an IAF step's Jacobian is lower triangular, a coupling step's is identity
    # on the passed half), so an optimizer that ignores Keras constraints cannot break it.
    encoder = flow_encoder(flow, num_steps=1)
    encoder(tiny_images())
    perturb(encoder)
    posterior = encoder(tiny_images())
    eps = posterior.distribution.sample(seed=SEED)
    with tf.GradientTape() as tape:
        tape.watch(eps)
        z = posterior.bijector.forward(eps)
    jacobian = tape.batch_jacobian(z, eps).numpy()
    assert np.abs(np.tril(jacobian, -1)).max() > 1e-3  # it does depend on earlier dimensions
    np.testing.assert_array_equal(np.triu(jacobian, 1), 0.0)
    if flow == "coupling":
        np.testing.assert_allclose(jacobian[:, 0], [[1.0, 0.0, 0.0]] * BATCH)


@pytest.mark.parametrize("flow", flows.FLOWS)
def test_a_new_flow_is_the_identity_and_perturbed_weights_change_q(flow):
    encoder = flow_encoder(flow)
    posterior = encoder(tiny_images())
    z = posterior.sample([3], seed=SEED)
    np.testing.assert_array_equal(z, posterior.distribution.sample([3], seed=SEED))
    fresh = tf.constant(z.numpy())
    np.testing.assert_allclose(posterior.log_prob(fresh), posterior.distribution.log_prob(fresh), atol=1e-6)
    # Control: the same z under a perturbed flow has another density.
    perturb(encoder)
    moved = encoder(tiny_images()).log_prob(fresh) - posterior.distribution.log_prob(fresh)
    assert np.abs(moved).min() > 0.01


@pytest.mark.parametrize("flow", flows.FLOWS)
def test_draws_are_reparameterised_and_stateless_in_the_seed(flow):
    encoder = flow_encoder(flow)
    encoder(tiny_images())
    perturb(encoder)
    with tf.GradientTape() as tape:
        z = encoder(tiny_images()).sample([2], seed=SEED)
        loss = tf.reduce_sum(z**2)
    gradients = tape.gradient(loss, encoder.trainable_variables)
    norms = {v.name: 0.0 if g is None else float(tf.norm(g)) for v, g in zip(encoder.trainable_variables, gradients)}
    assert all(norm > 0 for norm in norms.values()), norms  # torso, heads, context and every step's weights
    assert {v.name for v in flow_variables(encoder)} <= set(norms)

    draw = tf.function(lambda seed: encoder(tiny_images()).sample([2], seed=seed))
    np.testing.assert_array_equal(draw(SEED), draw(SEED))
    np.testing.assert_array_equal(z, encoder(tiny_images()).sample([2], seed=SEED))
    assert np.abs(draw(SEED) - draw(SEED + 1)).min() > 0


class StandIn:
    """The VAE interface, nothing else: encode, decode, prior."""

    def __init__(self, encoder):
        self.encode, self.decode = encoder, nets.Decoder([5], (4, 4, 1))
        self.prior = model.standard_normal_prior(LATENT)


@pytest.mark.parametrize("flow", flows.FLOWS)
@pytest.mark.parametrize(("num_samples", "estimator"), [(1, "analytic"), (2, "monte_carlo")])
def test_negative_elbo_rate_is_log_q_minus_log_p_at_the_drawn_z(flow, num_samples, estimator):
    encoder = flow_encoder(flow)
    encoder(tiny_images())
    perturb(encoder)
    vae, images = StandIn(encoder), tiny_images()
    posterior = encoder(images)
    assert not objectives.is_factorised(posterior)
    terms = objectives.negative_elbo(vae, images, seed=SEED, num_samples=num_samples, kl_estimator=estimator)

    eps = posterior.distribution.sample([num_samples], seed=SEED)
    rates, distortions = [], []
    for draw in range(num_samples):
        z, log_q = explicit_log_q(posterior, eps[draw])
        rates.append(log_q - vae.prior.log_prob(z))
        distortions.append(-vae.decode(z).log_prob(images))
    assert np.abs(np.mean(rates, 0) - posterior.distribution.kl_divergence(vae.prior)).min() > 0.01  # not the base KL
    np.testing.assert_allclose(terms.rate, np.mean(rates, 0), atol=1e-4)
    np.testing.assert_allclose(terms.distortion, np.mean(distortions, 0), rtol=1e-5)
    np.testing.assert_allclose(terms.loss, terms.distortion + terms.rate, rtol=1e-6)


def graph_op_types(function, *args):
    return {op.type for op in function.get_concrete_function(*args).graph.get_operations()}


def test_log_q_at_the_drawn_z_reuses_the_forward_pass_inside_tf_function():
    # Inverting an IAF step is a tf.while_loop of latent_size passes; log q at a z the flow just drew must not
    # take it (TFP's bijector cache), including through the objective.
    encoder = flow_encoder("iaf")
    encoder(tiny_images())
    perturb(encoder)

    def score(images, seed, copy):
        posterior = encoder(images)
        z = posterior.sample([2], seed=seed)
        return posterior.log_prob(tf.identity(z) if copy else z)

    cached, inverted = tf.function(lambda i, s: score(i, s, False)), tf.function(lambda i, s: score(i, s, True))
    assert not {t for t in graph_op_types(cached, tiny_images(), SEED) if "While" in t}
    assert {t for t in graph_op_types(inverted, tiny_images(), SEED) if "While" in t}  # control: the check sees it
    np.testing.assert_allclose(cached(tiny_images(), SEED), inverted(tiny_images(), SEED), atol=1e-4)

    vae = StandIn(encoder)
    elbo = tf.function(lambda i, s: objectives.negative_elbo(vae, i, seed=s, num_samples=2, kl_estimator="monte_carlo"))
    assert not {t for t in graph_op_types(elbo, tiny_images(), SEED) if "While" in t}


@pytest.mark.parametrize("flow", flows.FLOWS)
def test_xla_compiles_draws_log_densities_and_gradients(flow):
    encoder = flow_encoder(flow)
    images = tiny_images()
    encoder(images)
    perturb(encoder)
    # Fresh draws from the posterior (new tensors, so the compiled log q must invert the flow). At points the
    # posterior gives no mass, log q is thousands of nats and float32 round-off through the inverted steps reaches
    # 1e-2 nats, varying with the order XLA sums in: a check there would test float32, not the compilation.
    other_z = tf.constant(encoder(images).sample([2], seed=[3, 3]).numpy())

    @tf.function(jit_compile=True)
    def compiled(images, seed, other_z):
        with tf.GradientTape() as tape:
            posterior = encoder(images)
            z = posterior.sample([2], seed=seed)
            log_q = posterior.log_prob(z)
            loss = tf.reduce_sum(log_q)
        gradients = tape.gradient(loss, encoder.trainable_variables)
        eps = posterior.distribution.sample([2], seed=seed)
        return eps, z, log_q, posterior.log_prob(other_z), gradients

    eps, z, log_q, other_log_q, gradients = compiled(images, SEED, other_z)
    posterior = encoder(images)
    np.testing.assert_allclose(z, posterior.bijector.forward(eps), atol=1e-5)
    np.testing.assert_allclose(log_q, posterior.log_prob(tf.constant(z.numpy())), atol=1e-4)
    np.testing.assert_allclose(other_log_q, posterior.log_prob(other_z), atol=1e-4)  # the inverse, compiled
    assert all(g is not None and np.all(np.isfinite(g)) for g in gradients)


@pytest.mark.parametrize("flow", flows.FLOWS)
def test_a_checkpoint_restores_every_flow_variable(tmp_path, flow):
    saved, restored = flow_encoder(flow), flow_encoder(flow)
    saved(tiny_images()), restored(tiny_images())
    perturb(saved, seed=1)
    perturb(restored, seed=2)
    steps, layers = 2, 2  # flow_hidden_units=[6]: a hidden and an output layer, each w, b and v
    assert len(flow_variables(saved)) == steps * layers * 3
    assert {id(v) for v in flow_variables(saved)} <= {id(v) for v in saved.trainable_variables}
    # torso 2, mean/log-variance head 2, context head 2, the flow
    assert len(saved.trainable_variables) == 6 + steps * layers * 3

    path = tf.train.Checkpoint(encoder=saved).write(str(tmp_path / "ckpt"))
    assert len([name for name, _ in tf.train.list_variables(path) if "VARIABLE_VALUE" in name]) == len(
        saved.trainable_variables
    )
    tf.train.Checkpoint(encoder=restored).read(path).assert_consumed()
    for ours, theirs in zip(saved.trainable_variables, restored.trainable_variables, strict=True):
        assert ours.name == theirs.name
        np.testing.assert_array_equal(ours, theirs)
    z = tf.random.stateless_normal([BATCH, LATENT], seed=[2, 2])
    np.testing.assert_allclose(saved(tiny_images()).log_prob(z), restored(tiny_images()).log_prob(z), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_steps=0), "num_steps must be a positive integer, got 0"),
        (dict(num_steps=1.5), "num_steps must be a positive integer, got 1.5"),
        (dict(flow="planar"), "flow must be one of 'iaf', 'coupling'; got 'planar'"),
        (dict(flow="coupling", latent_size=1), "latent_size must be >= 2 for flow='coupling'"),
        (dict(latent_size=0), "latent_size must be a positive integer, got 0"),
        (dict(context_size=0), "context_size must be a positive integer, got 0"),
        (dict(flow_hidden_units=[6, 0]), "flow_hidden_units must be positive integers, got [6, 0]"),
        (dict(hidden_sizes=[-1]), "hidden_sizes must be positive integers, got [-1]"),
        (dict(conv_channels=[0]), "conv_channels must be positive integers, got [0]"),
        (dict(min_scale=0.0), "min_scale must be a positive finite number, got 0.0"),
        (dict(activation="swish"), "unknown activation 'swish'"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, message):
    arguments = dict(hidden_sizes=[8], latent_size=LATENT, num_steps=2) | kwargs
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        flows.FlowEncoder(**arguments)


def test_an_iaf_on_one_dimension_is_an_affine_map_of_the_context():
    # With latent_size = 1 the MADE sees no input: shift and scale depend on x only through h(x).
    encoder = flows.FlowEncoder([8], 1, 2, context_size=4, flow_hidden_units=[6])
    encoder(tiny_images())
    perturb(encoder)
    posterior = encoder(tiny_images())
    eps = posterior.distribution.sample([5], seed=SEED)
    z = posterior.bijector.forward(eps)
    slope = (z[1:] - z[:-1]) / (eps[1:] - eps[:-1])
    np.testing.assert_allclose(slope, tf.broadcast_to(slope[:1], slope.shape), rtol=1e-4)


def test_a_conv_torso_and_mixed_precision_give_the_same_kind_of_posterior():
    encoder = flows.FlowEncoder([8], LATENT, 1, context_size=4, flow_hidden_units=[6], conv_channels=[2])
    float32 = encoder(tiny_images())
    assert any("conv_0" in v.name for v in encoder.trainable_variables)
    with precision.compute("mixed_bfloat16"):
        bfloat16 = encoder(tiny_images())
    z = float32.sample([2], seed=SEED)
    assert bfloat16.batch_shape == [BATCH] and bfloat16.event_shape == [LATENT]
    assert bfloat16.log_prob(z).dtype == tf.float32
    np.testing.assert_allclose(bfloat16.log_prob(z), float32.log_prob(z), rtol=0.05)

"""Samplers fitted after training (tfvae.samplers, tfvae.run_samplers): EM against a known mixture, each fitted
density against a single Gaussian on held-out codes, the temperature, saving and loading, and a tiny run through
`tfvae sample`, `tfvae evaluate --samples` and `tfvae export`.

Codes are drawn with NumPy from distributions whose answer is known; tolerances are argued from sampling error
(thousands of draws), never from float32's last bits.
"""

import json
import shutil

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from PIL import Image

from conftest import make_fixture
from tfvae import cli, config, model, protocol, run_samplers, samplers

tfd = tfp.distributions


def one_line(error) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def two_blobs(n: int, rng: np.random.Generator) -> np.ndarray:
    """Codes [n, 2] far from one Gaussian: two tight clusters at (+-3, +-0.5), standard deviation 0.3."""
    side = rng.integers(0, 2, n) * 2 - 1
    return np.stack([3.0 * side + 0.3 * rng.normal(size=n), 0.5 * side + 0.3 * rng.normal(size=n)], axis=1)


# --------------------------------------------------------------------------- the Gaussian mixture
def test_em_recovers_the_weights_means_and_covariances_of_a_known_mixture():
    rng = np.random.default_rng(0)
    n = 4000
    first = rng.random(n) < 0.3
    points = np.where(first[:, None], rng.normal([-2.0, 0.0], [0.5, 1.0], (n, 2)),
                      rng.normal([3.0, 1.0], [1.0, 0.4], (n, 2)))
    fit = samplers.fit_gaussian_mixture(points, 2, seed=0)
    order = np.argsort(fit.means[:, 0])
    # Sampling error: a weight's sd is sqrt(0.21 / 4000) = 0.007, a mean's at most 1 / sqrt(1200) = 0.03, a
    # variance's about sqrt(2 / 1200) = 4% of it: the tolerances are 4 to 5 of those.
    np.testing.assert_allclose(fit.weights[order], [0.3, 0.7], atol=0.03)
    np.testing.assert_allclose(fit.means[order], [[-2.0, 0.0], [3.0, 1.0]], atol=0.15)
    np.testing.assert_allclose(np.diagonal(fit.covariances[order], axis1=1, axis2=2),
                               [[0.25, 1.0], [1.0, 0.16]], rtol=0.2)
    assert fit.converged


def test_the_fitted_mixture_is_a_mixture_same_family_scoring_codes_as_em_does():
    rng = np.random.default_rng(1)
    codes = two_blobs(2000, rng)
    gmm = samplers.GaussianMixtureSampler(2, num_components=3)
    record = gmm.fit(codes)
    assert isinstance(gmm.distribution(), tfd.MixtureSameFamily)
    # TFP's float32 log-density of the float32 parameters against EM's float64 mean: per code the float32
    # rounding is about 1e-6 of values of order 1, far below 1e-3.
    assert float(tf.reduce_mean(gmm.log_prob(codes))) == pytest.approx(record["mean_log_likelihood"], abs=1e-3)
    assert record["codes"] == 2000 and record["converged"]


def test_a_mixture_scores_a_skewed_aggregate_posterior_better_than_the_standard_normal():
    # Codes as a trained encoder leaves them: clusters off the origin, one dimension skewed, one nearly unused.
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 1.5, (5, 4))
    codes = centres[rng.integers(0, 5, 3000)] + 0.3 * rng.normal(size=(3000, 4))
    codes[:, 1] = np.exp(codes[:, 1] / 2)
    codes[:, 3] *= 0.01
    gmm = samplers.GaussianMixtureSampler(4, num_components=5)
    gmm.fit(codes[:2000])
    held_out = codes[2000:]
    standard = samplers.PriorSampler(model.standard_normal_prior(4))
    gain = float(tf.reduce_mean(gmm.log_prob(held_out)) - tf.reduce_mean(standard.log_prob(held_out)))
    assert gain > 5.0  # measured 8.67 nats per code (much of it the nearly unused dimension)


# --------------------------------------------------------------------------- the trained samplers
@pytest.mark.parametrize("kind, options", [
    ("flow", {"num_steps": 2, "hidden_sizes": (32, 32), "steps": 1000}),
    ("two-stage", {"hidden_sizes": (32, 32), "steps": 1000, "learning_rate": 3e-3}),
])
def test_a_trained_sampler_beats_a_gaussian_on_held_out_codes_of_two_clusters(kind, options):
    rng = np.random.default_rng(3)
    train, held_out = two_blobs(2000, rng), two_blobs(1000, rng)
    gaussian = scipy.stats.multivariate_normal(train.mean(axis=0), np.cov(train, rowvar=False))
    sampler = samplers.build(kind, 2, **options)
    sampler.fit(train)
    gain = float(tf.reduce_mean(sampler.log_prob(held_out))) - gaussian.logpdf(held_out).mean()
    # Measured 1.16 (flow) and 1.37 (two-stage, a lower bound) nats per code over the ML Gaussian's -2.76, with
    # oneDNN on and off; the standard error of a mean over 1000 held-out codes is 0.03 to 0.04.
    assert gain > 0.5
    draws = sampler.sample(1000, seed=tf.constant([0, 1])).numpy()
    # Most draws land in the clusters, not between them (measured 86% and 89%; the fitted Gaussian's: 32%).
    assert np.mean(np.abs(np.abs(draws[:, 0]) - 3.0) < 1.0) > 0.7


# --------------------------------------------------------------------------- temperature
def test_temperature_one_half_halves_the_spread_of_the_prior_and_of_a_mixture():
    seed = tf.constant([4, 2])
    prior = samplers.PriorSampler(model.standard_normal_prior(3))
    spread = [np.std(prior.sample(20000, seed=seed, temperature=t).numpy()) for t in (1.0, 0.5)]
    assert spread[1] / spread[0] == pytest.approx(0.5, abs=0.02)  # the sd of 60,000 draws: 0.3% off at most
    gmm = samplers.GaussianMixtureSampler(3, num_components=1)
    gmm.fit(np.random.default_rng(0).normal([5.0, -1.0, 2.0], [2.0, 1.0, 0.5], (4000, 3)))
    deviation = [gmm.sample(20000, seed=seed, temperature=t).numpy() - gmm.loc.numpy() for t in (1.0, 0.5)]
    np.testing.assert_allclose(deviation[1].std(axis=0) / deviation[0].std(axis=0), 0.5, atol=0.02)


def test_a_learned_mixture_prior_is_tempered_component_by_component():
    prior = tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 1.0]),
                                  tfd.Independent(tfd.Normal([[0.0, 0.0], [4.0, 4.0]], [[1.0, 2.0], [0.5, 0.5]]), 1))
    cooled = samplers.tempered(prior, 0.5)
    np.testing.assert_allclose(cooled.components_distribution.distribution.scale, [[0.5, 1.0], [0.25, 0.25]])
    np.testing.assert_allclose(cooled.mixture_distribution.logits, [0.0, 1.0])
    assert samplers.tempered(prior, 1.0) is prior


# --------------------------------------------------------------------------- saving, loading, drawing
@pytest.mark.parametrize("kind, options", [
    ("gmm", {"num_components": 2}),
    ("flow", {"num_steps": 2, "hidden_sizes": (8,), "steps": 20}),
    ("two-stage", {"hidden_sizes": (8,), "steps": 20}),
])
def test_a_saved_sampler_loads_with_the_same_draws_and_densities(kind, options, tmp_path):
    codes = two_blobs(300, np.random.default_rng(5))
    sampler = samplers.build(kind, 2, **options)
    sampler.fit(codes)
    samplers.save(sampler, tmp_path / kind)
    loaded = samplers.load(tmp_path / kind)
    assert type(loaded) is type(sampler) and loaded.options() == sampler.options()
    assert loaded.fit_record == sampler.fit_record
    seed = tf.constant([7, 7])
    # The same variables through the same ops: equal up to float32 rounding of the same computation.
    np.testing.assert_allclose(loaded.sample(5, seed=seed), sampler.sample(5, seed=seed), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.log_prob(codes[:10]), sampler.log_prob(codes[:10]), rtol=1e-6)


def test_vae_sample_and_protocol_sample_decode_the_sampler_s_codes():
    vae = model.build(config.preset("tiny").model, (28, 28, 1))
    gmm = samplers.GaussianMixtureSampler(2, num_components=2)
    gmm.fit(two_blobs(200, np.random.default_rng(6)))
    seed = tf.constant([1, 2])
    expected = vae.decode(gmm.sample(4, seed=seed)).mean()
    np.testing.assert_allclose(vae.sample(4, seed=seed, sampler=gmm), expected, rtol=1e-6)
    np.testing.assert_allclose(protocol.sample(vae, 4, seed=seed, sampler=gmm), expected, rtol=1e-6)
    cooled = samplers.with_temperature(gmm, 0.5)
    np.testing.assert_allclose(vae.sample(4, seed=seed, sampler=cooled),
                               vae.decode(gmm.sample(4, seed=seed, temperature=0.5)).mean(), rtol=1e-6)
    assert not np.allclose(vae.sample(4, seed=seed, sampler=gmm), vae.sample(4, seed=seed))  # not the prior's


# --------------------------------------------------------------------------- bad input: one line each
@pytest.mark.parametrize("temperature", [0, -1.0, float("nan")])
def test_a_temperature_of_zero_or_below_is_one_line(temperature):
    prior = samplers.PriorSampler(model.standard_normal_prior(2))
    with pytest.raises(ValueError, match="temperature must be a number > 0") as error:
        prior.sample(3, temperature=temperature)
    one_line(error)
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        samplers.with_temperature(prior, temperature)


def test_bad_sampler_inputs_are_one_line_each(tmp_path):
    cases = [
        (lambda: samplers.build("kde", 2), "unknown sampler 'kde'; fitted samplers: gmm, two-stage, flow"),
        (lambda: samplers.GaussianMixtureSampler(3).fit(np.zeros((20, 2))), r"fits codes \[N, 3\]; got shape"),
        (lambda: samplers.GaussianMixtureSampler(2, 10).fit(np.zeros((5, 2))), "needs at least 10 codes"),
        (lambda: samplers.GaussianMixtureSampler(1).fit([[np.nan]] * 20), "NaN or infinite"),
        (lambda: samplers.load(tmp_path), "no fitted sampler in"),
        (lambda: samplers.save(samplers.GaussianMixtureSampler(2), tmp_path / "g"), "is not fitted"),
        (lambda: samplers.tempered(tfd.Independent(tfd.Laplace([0.0], 1.0), 1), 0.5), "this prior is a Laplace"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            call()
        one_line(error)


# --------------------------------------------------------------------------- a tiny run, end to end
def run(*argv):
    return cli.main([str(arg) for arg in argv])


def test_the_cli_knows_every_sampler():
    assert cli._SAMPLERS == samplers.KINDS


@pytest.mark.slow  # 10 s: fits a mixture to a run's 60,000 training codes
def test_tfvae_sample_fits_the_mixture_once_draws_a_grid_and_reuses_it(tiny_run, capsys):
    assert run("sample", tiny_run, "--sampler", "gmm", "--n", "16") == 0
    out = capsys.readouterr().out
    assert "gmm sampler: fitted to 200 training codes" in out
    spec = json.loads((tiny_run / "samplers" / "gmm" / "sampler.json").read_text())
    assert spec["kind"] == "gmm" and spec["latent_size"] == 3 and spec["fit"]["codes"] == 200
    picture = np.asarray(Image.open(tiny_run / "figures" / "samples-gmm.png").convert("L"), dtype=float)
    assert picture.shape[1] >= 600 and picture.std() > 10
    written = (tiny_run / "samplers" / "gmm" / "sampler.json").stat().st_mtime_ns
    assert run("sample", tiny_run, "--sampler", "gmm", "--n", "4", "--temperature", "0.5") == 0
    assert (tiny_run / "samplers" / "gmm" / "sampler.json").stat().st_mtime_ns == written  # read, not fitted again
    assert (tiny_run / "figures" / "samples-gmm-t0.5.png").exists()


def test_tfvae_sample_all_draws_every_sampler_side_by_side(tiny_run):
    # The two trained samplers fitted first with a few steps (their defaults train for 4,000): the command reuses them.
    vae = run_samplers.rundir.restore_model(tiny_run)
    for kind in ("two-stage", "flow"):
        run_samplers.fitted_sampler(tiny_run, kind, model=vae, options={"steps": 20, "hidden_sizes": [8]})
    out = tiny_run / "all.png"
    assert run("sample", tiny_run, "--sampler", "all", "--n", "16", "--out", out) == 0
    picture = np.asarray(Image.open(out).convert("L"), dtype=float)
    assert picture.std() > 10
    assert sorted(path.name for path in (tiny_run / "samplers").iterdir()) == ["flow", "gmm", "two-stage"]


def test_the_export_carries_the_fitted_sampler(tiny_run, tmp_path):
    vae = run_samplers.rundir.restore_model(tiny_run)
    gmm = run_samplers.fitted_sampler(tiny_run, "gmm", model=vae)
    assert run("export", tiny_run, tmp_path / "export", "--sampler", "gmm") == 0
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    seed = tf.constant([3, 4])
    drawn = loaded.sample_fitted(tf.constant(5), seed, tf.constant(0.7))
    z = gmm.sample(5, seed=seed, temperature=0.7)
    # Eager against the SavedModel's graph of the same ops: float32 rounding (rtol 1e-5, atol near 0).
    np.testing.assert_allclose(drawn["z"], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(drawn["images"], vae.decode(z).mean(), rtol=1e-5, atol=1e-6)
    assert loaded.sampler_kind.numpy() == b"gmm"
    assert run("export", tiny_run, tmp_path / "plain", "--sampler", "none") == 0
    assert not hasattr(tf.saved_model.load(str(tmp_path / "plain")), "sample_fitted")


def test_sample_scores_of_a_run_with_enough_test_images_go_into_eval_json(tiny_run, tmp_path):
    # conftest's tiny run has 40 test images, fewer than the 129 a score needs: a copy reading data with 300.
    make_fixture(tmp_path / "tfds", "mnist", compress=False, seed=8, n_train=200, n_test=300)
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    shutil.rmtree(run_dir / "samplers", ignore_errors=True)
    settings = json.loads((run_dir / "config.json").read_text())
    settings["data"]["data_dir"] = str(tmp_path / "tfds")
    (run_dir / "config.json").write_text(json.dumps(settings))
    assert run("evaluate", run_dir, "--k", "2", "--limit", "10", "--no-progress", "--samples", "150",
               "--samplers", "prior", "gmm") == 0
    samples = json.loads((run_dir / "eval.json").read_text())["samples"]
    assert samples["n"] == 150 and samples["seeds"] == [0, 1, 2] and set(samples["samplers"]) == {"prior", "gmm"}
    for scores in samples["samplers"].values():
        distance = scores["classifier_frechet_distance"]
        assert len(distance["values"]) == 3 and distance["mean"] > 0
        assert distance["sd"] == pytest.approx(np.std(distance["values"], ddof=1))
        assert 0 <= scores["precision"]["mean"] <= 1 and 0 <= scores["recall"]["mean"] <= 1
    assert samples["samplers"]["gmm"]["fit"]["codes"] == 200 and samples["samplers"]["prior"]["fit"] is None


@pytest.mark.parametrize("arguments, message", [
    (["sample", "--n", "4", "--temperature", "0"], "temperature must be a number > 0"),
    (["sample", "--n", "4", "--temperature", "-2"], "temperature must be a number > 0"),
    (["evaluate", "--k", "2", "--no-progress", "--samples", "100"], "--samples N must be at least 129"),
    (["evaluate", "--k", "2", "--no-progress", "--samples", "1000"], "--samples N must be at most 40"),
])
def test_bad_cli_input_is_one_line(tiny_run, capsys, arguments, message):
    command, *options = arguments
    assert run(command, tiny_run, *options) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("tfvae: error: ") and message in error and "\n" not in error


def test_a_dataset_without_a_committed_classifier_is_one_line(tiny_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    settings = json.loads((copy / "config.json").read_text())
    settings["data"]["name"] = "dsprites_small"
    (copy / "config.json").write_text(json.dumps(settings))
    assert run("evaluate", copy, "--samples", "500", "--no-progress") == 2
    error = capsys.readouterr().err.strip()
    assert "need a feature classifier for the run's dataset: no feature classifier for dataset 'dsprites_small'" in error
    assert "tools/train_feature_classifier.py --dataset dsprites_small" in error and "\n" not in error


def test_a_sampler_asked_of_a_run_without_its_training_images_is_one_line(tiny_run, monkeypatch):
    vae = run_samplers.rundir.restore_model(tiny_run)

    def missing(name, split, data_dir=None):
        raise run_samplers.data_lib.DataNotFoundError(f"could not fetch {name}: no copy\nsecond line")

    monkeypatch.setattr(run_samplers.data_lib, "load_arrays", missing)
    with pytest.raises(ValueError, match=r"needs the run's training images \(mnist, split 'train'\)") as error:
        run_samplers.fitted_sampler(tiny_run, "flow", model=vae, refit=True)
    assert "tfvae data fetch mnist" in one_line(error) and "images=..." in one_line(error)

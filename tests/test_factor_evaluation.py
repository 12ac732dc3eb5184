"""A run against its dataset's factors (tfvae.factor_evaluation): the metrics of `tfvae evaluate --disentanglement`,
the factor each latent dimension carries, and the traversal named by it."""

import functools
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae
from tfvae import cli, disentanglement, factor_evaluation, factors, plots, rundir

tfd = tfp.distributions

# A dsprites_small run, tiny: 16 hidden units, 3 latents, one epoch of 45 batches of 256 (the grid, by name);
# without XLA, whose compilation would take 8 of its 13 s.
TINY_DSPRITES = ["train", "--preset", "dsprites-vae", "--set", "model.hidden_sizes=[16]", "--latent-size", "3",
                 "--epochs", "1", "--batch-size", "256", "--set", "train.log_every=45", "--set",
                 "train.jit_compile=false", "--no-progress", "--no-figures", "--no-tensorboard"]  # fmt: skip
SMALL = {"num_points": 1000, "batch_size": 8, "num_train": 50, "num_eval": 50}  # seconds, not minutes


@pytest.fixture(scope="module")
def sprites_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dsprites") / "vae"
    assert cli.main([*TINY_DSPRITES, "--run-dir", str(run_dir)]) == 0
    return run_dir


class CentreReader:
    """A stand-in model: the sprite's centre of mass (x, y, in pixels) and a constant 0 as its posterior means,
    scale 0.5, under a standard Normal prior."""

    latent_size = 3
    prior = tfd.Independent(tfd.Normal(tf.zeros(3), 1.0), 1)

    def encode(self, images):
        mass = tf.reduce_sum(images, [1, 2, 3]) + 1e-6
        grid = tf.range(images.shape[1], dtype=tf.float32) + 0.5
        x = tf.reduce_sum(images * grid[None, None, :, None], [1, 2, 3]) / mass
        y = tf.reduce_sum(images * grid[None, :, None, None], [1, 2, 3]) / mass
        loc = tf.stack([x, y, tf.zeros_like(x)], -1)
        return tfd.Independent(tfd.Normal(loc, 0.5), 1)


def test_each_dimension_is_named_by_its_factor_with_its_kl_and_activity():
    table = factor_evaluation.latent_factors(CentreReader(), factors.dsprites_small(), num_points=3000)
    assert table["factor"].tolist()[:2] == ["x_position", "y_position"]
    assert (table["share"][:2] > 0.9).all() and table["share"][2] == 0.0  # a constant carries nothing, exactly
    assert table["active"].tolist() == [True, True, False]
    # The KL column is the closed form 0.5 (mu^2 + s^2 - 1 - log s^2) averaged over the same images.
    small = factors.dsprites_small()
    images = small.images(small.sample_factors(3000, np.random.default_rng(0))).astype(np.float32) / 255
    means = CentreReader().encode(tf.constant(images)).mean().numpy().astype(np.float64)
    expected = (0.5 * (means**2 + 0.25 - 1 - np.log(0.25))).mean(0)
    np.testing.assert_allclose(table["kl"], expected, rtol=1e-4)
    np.testing.assert_allclose(table["variance"], means.var(0), rtol=1e-4)


def test_traversal_rows_go_by_kl_and_carry_their_factor():
    table = factor_evaluation.latent_factors(CentreReader(), factors.dsprites_small(), num_points=3000)
    dims, labels = plots.grids.factor_rows(table)
    assert dims == [int(d) for d in np.argsort(-table["kl"].to_numpy(), kind="stable")]
    assert labels[dims.index(2)] == "z[2] shape 0.00 inactive"
    assert labels[dims.index(0)] == f"z[0] x_position {table['share'][0]:.2f}"


def test_the_metrics_of_a_run_are_those_of_its_posterior_means(sprites_run):
    results = factor_evaluation.evaluate_disentanglement(sprites_run, seeds=(0, 1), **SMALL)
    assert results["dataset"]["name"] == "dsprites_small"
    assert "procedural, not comparable with published dSprites numbers" in results["dataset"]["note"]
    metrics = results["metrics"]
    assert set(metrics) == {"mig", "sap", "disentanglement", "completeness", "informativeness",
                            "total_correlation", "active_units", "beta_vae_score", "factor_vae_score"}
    for key, metric in metrics.items():
        assert len(metric["values"]) == 2 and metric["choices"], key
        assert metric["mean"] == pytest.approx(np.mean(metric["values"]))
        assert metric["sd"] == pytest.approx(np.std(metric["values"], ddof=1))
    assert metrics["mig"]["values"][0] != metrics["mig"]["values"][1]  # another seed, another sample
    # Independently: MIG of the posterior means of seed 1's sample, encoded straight by the restored model.
    model = rundir.restore_model(sprites_run, (32, 32, 1))
    small = factors.dsprites_small()
    table = small.sample_factors(1000, np.random.default_rng(1))
    means = model.encode(tf.constant(small.images(table).astype(np.float32) / 255)).mean().numpy()
    assert metrics["mig"]["values"][1] == pytest.approx(disentanglement.mig(means, table)["mig"], abs=1e-9)


def test_evaluate_disentanglement_writes_eval_json_beside_the_log_likelihood(sprites_run, capsys, monkeypatch):
    small_interventions = {key: SMALL[key] for key in ("batch_size", "num_train", "num_eval")}
    monkeypatch.setattr(factor_evaluation, "evaluate_disentanglement",
                        functools.partial(factor_evaluation.evaluate_disentanglement, **small_interventions))
    assert cli.main(["evaluate", str(sprites_run), "--disentanglement", "--metric-seeds", "3", "--points", "1000"]) == 0
    out = capsys.readouterr().out
    assert "dsprites_small: procedural, not comparable with published dSprites numbers" in out
    assert "mean +- sd over evaluation seeds 3:" in out and " mig " in out
    written = json.loads((sprites_run / "eval.json").read_text())["disentanglement"]
    assert written["seeds"] == [3] and written["metrics"]["mig"]["sd"] == 0.0
    # The log-likelihood evaluation keeps the metrics, and the metrics keep it.
    assert cli.main(["evaluate", str(sprites_run), "--k", "2", "--limit", "4", "--no-progress"]) == 0
    both = json.loads((sprites_run / "eval.json").read_text())
    assert both["k"] == 2 and both["disentanglement"] == written


def test_a_run_trained_by_name_draws_its_traversal_named_by_factor(sprites_run):
    (path,) = plots.draw_run(sprites_run, figures=["factor_traversals"])
    assert path.name == "factor_traversals.png" and path.stat().st_size > 1000
    assert "factor_traversals" not in [name for name, (_, applies) in plots.FIGURES.items()
                                       if not applies(plots.RunData(sprites_run))]
    assert not plots.FIGURES["latent_offset"][1](plots.RunData(sprites_run))  # no classes to offset between


def test_a_run_without_factors_is_one_line_naming_data_name(tmp_path, capsys):
    run_dir = rundir.prepare(tmp_path / "mnist", tfvae.preset("tiny"))
    with pytest.raises(ValueError, match=r"^data\.name 'mnist' has no ground-truth factors") as info:
        factor_evaluation.evaluate_disentanglement(run_dir)
    assert "\n" not in str(info.value)
    assert cli.main(["evaluate", str(run_dir), "--disentanglement"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("tfvae: error: data.name 'mnist' has no ground-truth factors") and "\n" not in error

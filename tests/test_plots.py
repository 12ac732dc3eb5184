"""Figures: grids hold the right tiles, charts and GIFs are drawn, and `tfvae plot` re-draws a run."""

import hashlib

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image
from scipy import stats

from tfvae import cli, config, data, evaluation, model, objectives, plots, rundir, train

IMAGE_SHAPE = (8, 8, 1)
H, W = IMAGE_SHAPE[:2]


@pytest.fixture(scope="module")
def vae():
    tf.random.set_seed(0)
    built = model.build(config.ModelConfig(hidden_sizes=(16,), latent_size=3), IMAGE_SHAPE)
    built(tf.zeros([1, *IMAGE_SHAPE]))
    return built


@pytest.fixture(scope="module")
def images():
    return (np.random.default_rng(0).random((12, *IMAGE_SHAPE)) < 0.4).astype(np.float32)


def decoded(vae, z):
    """The decoder called directly on one code: [H, W, C]."""
    return vae.decode(tf.constant([z], tf.float32)).mean().numpy()[0]


def tile_at(grid, row, col, padding):
    top, left = row * (H + padding), col * (W + padding)
    return grid[top : top + H, left : left + W]


def picture(path):
    """A saved PNG as greyscale floats; fails unless it is wide enough and not blank."""
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert pixels.shape[1] >= 600, f"{path} is {pixels.shape[1]} px wide"
    assert pixels.std() > 10, f"{path} looks blank"
    return pixels


# --------------------------------------------------------------------------- coordinates and tiles
def test_quantile_coordinates_are_standard_normal_quantiles():
    # The same SciPy quantiles rounded to float32 (6e-8 relative; the middle one is 0 in both).
    np.testing.assert_allclose(plots.quantile_coordinates(7), stats.norm.ppf(np.linspace(0.05, 0.95, 7)), rtol=1e-6)
    expected = stats.norm.ppf([0.1, 0.1 + 0.8 / 3, 0.9 - 0.8 / 3, 0.9])
    np.testing.assert_allclose(plots.quantile_coordinates(4, 0.1, 0.9), expected, rtol=1e-6)
    np.testing.assert_allclose(plots.linear_coordinates(5, 2.0), [-2, -1, 0, 1, 2])


def test_latent_grid_tiles_are_decoder_calls_at_their_coordinates(vae):
    xs, ys = plots.quantile_coordinates(4), plots.linear_coordinates(3, 1.5)
    grid = plots.latent_grid(vae, xs, ys, dims=(2, 0))
    assert grid.shape == (3 * H, 4 * W, 1)
    for row in range(3):
        for col in range(4):
            z = np.zeros(3)
            z[2], z[0] = xs[col], ys[::-1][row]  # columns: x = z[2]; rows: y = z[0], largest on top
            np.testing.assert_allclose(tile_at(grid, row, col, 0), decoded(vae, z), atol=1e-6)


def test_traversal_rows_sweep_one_dimension_from_the_base_code(vae):
    base, values = np.array([0.3, -0.2, 0.5]), np.array([-2.0, 0.0, 2.0])
    grid = plots.traversal_grid(vae, base, [2, 0], values)
    for row, dim in enumerate([2, 0]):
        for col, value in enumerate(values):
            z = base.copy()
            z[dim] = value
            np.testing.assert_allclose(tile_at(grid, row, col, 1), decoded(vae, z), atol=1e-6)


def test_interpolation_and_offset_grids_decode_the_lines_they_name(vae, images):
    grid = plots.interpolation_grid([vae, vae], images[0], images[1], steps=5)
    start, end = vae.encode(tf.constant(images[:2])).mean().numpy()
    assert grid.shape == (2 * H + 1, 7 * W + 6, 1)
    np.testing.assert_array_equal(tile_at(grid, 1, 0, 1), images[0])
    np.testing.assert_array_equal(tile_at(grid, 1, 6, 1), images[1])
    for col, t in enumerate(np.linspace(0, 1, 5), start=1):
        np.testing.assert_allclose(tile_at(grid, 0, col, 1), decoded(vae, (1 - t) * start + t * end), atol=1e-5)

    direction, ts = np.array([1.0, 0.0, -1.0]), np.array([-1.0, 0.0, 2.0])
    offsets = plots.offset_grid(vae, np.stack([start, end]), direction, ts)
    for row, base in enumerate([start, end]):
        for col, t in enumerate(ts):
            np.testing.assert_allclose(tile_at(offsets, row, col, 1), decoded(vae, base + t * direction), atol=1e-5)


def test_reconstruction_and_prior_sample_grids(vae, images):
    grid = plots.reconstruction_grid(vae, images[:4])
    reconstructions = vae.reconstruct(tf.constant(images[:4])).numpy()
    for col in range(4):
        np.testing.assert_array_equal(tile_at(grid, 0, col, 1), images[col])
        np.testing.assert_allclose(tile_at(grid, 1, col, 1), reconstructions[col], atol=1e-6)
    samples = plots.prior_sample_grid(vae, 2, 3, seed=5)
    np.testing.assert_array_equal(samples, plots.prior_sample_grid(vae, 2, 3, seed=5))  # repeatable
    codes = plots.prior_sample_codes(vae, 2, 3, seed=5)
    np.testing.assert_allclose(tile_at(samples, 1, 2, 1), decoded(vae, codes[1, 2]), atol=1e-6)


# --------------------------------------------------------------------------- charts and files
def fake_history():
    steps = np.arange(10, 110, 10)
    history = pd.DataFrame(
        {
            "step": steps,
            "epoch": steps / 50,
            "train_loss": 100 / np.sqrt(steps),
            "train_distortion": 90 / np.sqrt(steps),
            "train_rate": 10 / np.sqrt(steps),
        }
    )
    for term in ("loss", "distortion", "rate"):
        history[f"test_{term}"] = np.where(steps % 50 == 0, history[f"train_{term}"] * 1.05, np.nan)
    return history


def test_every_chart_and_grid_is_drawn_readable(vae, images, tmp_path):
    rng = np.random.default_rng(1)
    charts = {
        "loss": plots.loss_curves(fake_history(), beta=0.5),
        "loss_log": plots.loss_curves(fake_history(), beta=1.0, log_scale=True),
        "scatter": plots.latent_scatter(rng.normal(size=(200, 3)), rng.integers(0, 10, 200), (2, 0), kl=[1, 2, 3]),
        "kl": plots.kl_per_dimension_chart([0.5, 2.0, 0.001], [0.3, 0.9, 0.0001]),
        "anomaly": plots.anomaly_histograms(
            pd.DataFrame(
                {
                    "source": ["test images"] * 100 + ["uniform noise"] * 20,
                    "kl": rng.gamma(10, 1, 120),
                    "negative_elbo": np.r_[rng.gamma(50, 1, 100), rng.gamma(400, 1, 20)],
                }
            )
        ),
    }
    assert "0.5 x rate" in charts["loss"].labels.title and "(beta = 1)" in charts["loss_log"].labels.title
    assert "2 of 3 units active" in charts["kl"].labels.title
    for name, chart in charts.items():
        chart.save(tmp_path / f"{name}.png", dpi=100, verbose=False)
        picture(tmp_path / f"{name}.png")
    coordinates = plots.quantile_coordinates(5)
    plots.save_grid(
        plots.latent_grid(vae, coordinates, coordinates),
        tmp_path / "grid.png",
        "a grid",
        xlabel="z[0]",
        ylabel="z[1]",
        xticks=coordinates,
        yticks=coordinates[::-1],
    )
    plots.save_grid(
        plots.reconstruction_grid(vae, images[:3]),
        tmp_path / "recon.png",
        "reconstructions",
        yticks=["original", "reconstructed"],
    )
    for name in ("grid", "recon"):
        picture(tmp_path / f"{name}.png")


def test_interpolation_gif_goes_there_and_back_and_loops(vae, images, tmp_path):
    path = plots.interpolation_gif({"vae": vae, "other": vae}, images[0], images[1], tmp_path / "i.gif", steps=5)
    gif = Image.open(path)
    assert gif.n_frames == 8 and gif.info["loop"] == 0  # 0 1 2 3 4 3 2 1, then again
    assert gif.size[0] >= 600
    assert plots.there_and_back(5) == [0, 1, 2, 3, 4, 3, 2, 1]


def test_progress_recorder_records_during_fit_and_writes_looping_gifs(tmp_path):
    experiment = config.override(
        config.preset("tiny"),
        {"model.hidden_sizes": [16], "data.batch_size": 8, "train.epochs": 2, "train.log_every": 2},
    )
    rng = np.random.default_rng(0)
    pixels = (rng.random((40, *IMAGE_SHAPE)) < 0.4).astype(np.float32)
    recorder = plots.ProgressRecorder(pixels[:4], every=4, grid_size=5)
    train.fit(
        experiment,
        tmp_path / "run",
        train_data=data.from_arrays(pixels, batch_size=8, shuffle=True),
        test_data=data.from_arrays(pixels[:16], batch_size=8),
        hooks=[recorder],
        progress=False,
    )
    # rows at steps 2 4 5 6 8 10; kept: the first row, the first at or after each multiple of 4, the last
    assert [record["step"] for record in recorder.frames()] == [2, 4, 8, 10]
    paths = recorder.save_gifs(tmp_path / "figures")
    assert [path.name for path in paths] == ["progress_manifold.gif", "progress_reconstructions.gif"]
    for path in paths:
        gif = Image.open(path)
        assert gif.n_frames == 4 and gif.info["loop"] == 0 and gif.size[0] >= 600


def test_anomaly_scores_are_the_per_example_terms_of_the_negative_elbo(vae, images):
    labels = np.arange(len(images)) % 3
    scores = evaluation.anomaly_scores(vae, data.from_arrays(images, labels, batch_size=5), seed=7)
    assert list(scores.columns) == ["kl", "reconstruction", "negative_elbo", "label"] and len(scores) == len(images)
    np.testing.assert_array_equal(scores["label"], labels)
    terms = objectives.negative_elbo(vae, tf.constant(images[5:10]), 1.0, seed=tf.constant([7, 1], tf.int32))
    np.testing.assert_allclose(scores["negative_elbo"][5:10], terms.loss.numpy(), rtol=1e-5)
    np.testing.assert_allclose(scores["kl"][5:10], terms.rate.numpy(), rtol=1e-5)


# --------------------------------------------------------------------------- the command line, end to end
def fingerprint(run_dir):
    """Hashes of history.csv and every checkpoint file."""
    files = [run_dir / "history.csv", *sorted((run_dir / "checkpoints").iterdir())]
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    """`tfvae train --progress-gifs` run with conftest's TINY_RUN_ARGUMENTS (the tiny preset, --latent-size 3, 2
    epochs logged every 2 steps)."""
    return tiny_run


def test_train_with_progress_gifs_writes_looping_gifs(trained_run):
    # 200 images, batch 32: rows at 2 4 6 7 8 10 12 14. Recorded every 4 * log_every = 8 steps:
    # the first row (2), the first at or after 8 (8) and the last (14).
    assert rundir.read_history(trained_run)["step"].tolist() == [2, 4, 6, 7, 8, 10, 12, 14]
    for name in ("progress_manifold", "progress_reconstructions"):
        gif = Image.open(trained_run / "figures" / f"{name}.gif")
        assert gif.n_frames == 3 and gif.info["loop"] == 0


def test_plot_redraws_every_figure_without_training(trained_run, capsys):
    before = fingerprint(trained_run)
    assert cli.main(["plot", str(trained_run), "--compare", str(trained_run)]) == 0
    assert fingerprint(trained_run) == before
    written = {line.split("/")[-1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")}
    expected = {
        "loss_curves.png",
        "loss_curves_log.png",
        "reconstructions.png",
        "prior_samples.png",
        "latent_grid.png",
        "latent_grid_linear.png",
        "traversals.png",
        "latent_scatter.png",
        "interpolation.png",
        "interpolation.gif",
        "kl_per_dimension.png",
        "anomaly_scores.png",
        "latent_offset.png",
    }
    assert written == expected
    for name in sorted(expected):
        assert (trained_run / "figures" / name).is_file()
        if name.endswith(".png"):
            picture(trained_run / "figures" / name)


def test_plot_draws_only_the_named_figures_and_refuses_unknown_names(trained_run, capsys):
    assert cli.main(["plot", str(trained_run), "--figures", "latent_grid", "loss_curves"]) == 0
    assert [line.split("/")[-1] for line in capsys.readouterr().out.splitlines()] == [
        "latent_grid.png",
        "loss_curves.png",
        "loss_curves_log.png",
    ]
    assert cli.main(["plot", str(trained_run), "--figures", "nope"]) == 2
    assert "unknown figure nope; known figures: loss_curves" in capsys.readouterr().err

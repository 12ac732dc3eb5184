"""What a new user trips on (issue 19): NumPy inputs, shape mistakes, quiet fallbacks, start-up noise."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfvae import cli, config, data, evaluation, model, nets, objectives, plots, rundir, train

IMAGE_SHAPE = (28, 28, 1)
LATENT = 3


def small_vae(seed=0):
    tf.random.set_seed(seed)
    return model.build(config.ModelConfig(hidden_sizes=(16,), latent_size=LATENT), IMAGE_SHAPE)


def uint8_images(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *IMAGE_SHAPE), dtype=np.uint8)


def run_cli(*argv):
    return cli.main([str(arg) for arg in argv])


# 1 ------------------------------------------------------------------ NumPy and uint8 at the API's boundary
def test_numpy_and_uint8_images_are_accepted_and_scaled_like_the_data_functions():
    vae = small_vae()
    pixels = uint8_images()
    scaled = pixels.astype(np.float32) / np.float32(255)  # the user's own scaling: float32 division, as tfvae's
    as_tensor = tf.constant(scaled)
    seed = tf.constant([1, 2], tf.int32)

    # One way to scale pixels: the API's boundary, the data pipeline and NumPy give the same float32 bits (a
    # correctly rounded division), so the same ops then run on the same inputs and the outputs are equal.
    np.testing.assert_array_equal(nets.as_images(pixels).numpy(), scaled)
    np.testing.assert_array_equal(next(iter(data.from_arrays(pixels, batch_size=4))).numpy(), scaled)
    np.testing.assert_array_equal(vae.encode(pixels).mean().numpy(), vae.encode(as_tensor).mean().numpy())
    # float64 pixels are rounded to float32 first: /255 in float64 then rounded equals the float32 division (53
    # >= 2 * 24 + 2 bits, so the double rounding is exact), hence equal again.
    np.testing.assert_array_equal(vae.encode(scaled.astype(np.float64)).mean().numpy(),
                                  vae.encode(as_tensor).mean().numpy())  # fmt: skip
    codes = np.zeros([2, LATENT])  # float64, as NumPy makes them
    assert vae.decode(codes).mean().shape == [2, *IMAGE_SHAPE]
    np.testing.assert_array_equal(vae.reconstruct(pixels).numpy(), vae.reconstruct(as_tensor).numpy())
    assert vae.sample(np.int64(2), seed=seed).shape == [2, *IMAGE_SHAPE]

    terms, expected = objectives.negative_elbo(vae, pixels, seed=seed), objectives.negative_elbo(vae, as_tensor, seed=seed)
    np.testing.assert_array_equal(terms.loss.numpy(), expected.loss.numpy())

    # An array and a dataset of the same images: the same per-image bounds, but batched and averaged by two
    # code paths (other batch shapes may pick other kernels); |nll| ~ 550 nats, a float32 sum of 784 pixel
    # terms and k = 4 samples rounds at about 784 * 6e-8 ~ 5e-5 relative: 1e-4 is a 2x margin over that.
    from_array = evaluation.evaluate(vae, pixels, k=4, seed=0)
    from_dataset = evaluation.evaluate(vae, data.from_arrays(pixels, batch_size=100), k=4, seed=0)
    assert from_array["num_examples"] == 4
    assert from_array["nll"] == pytest.approx(from_dataset["nll"], rel=1e-4)

    np.testing.assert_array_equal(plots.reconstruction_grid(vae, pixels), plots.reconstruction_grid(vae, scaled))
    np.testing.assert_array_equal(plots.interpolation_grid(vae, pixels[0], pixels[1], steps=3),
                                  plots.interpolation_grid(vae, scaled[0], scaled[1], steps=3))  # fmt: skip
    np.testing.assert_array_equal(plots.encode_means(vae, pixels), plots.encode_means(vae, scaled))
    np.testing.assert_array_equal(plots.ProgressRecorder(pixels).images, scaled)


# 2 ------------------------------------------------------------------ shape mistakes in the model's words
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_an_encoder_given_images_of_another_shape_says_which_shapes(architecture):
    settings = config.ModelConfig(hidden_sizes=(16,), latent_size=LATENT, architecture=architecture,
                                  conv_channels=(4, 4))  # fmt: skip
    vae = model.build(settings, IMAGE_SHAPE)
    vae.encode(np.zeros([2, *IMAGE_SHAPE], np.float32))
    with pytest.raises(ValueError, match=r"this encoder was built for images of shape \(28, 28, 1\); got \(32, 32, 3\)"):
        vae.encode(np.zeros([2, 32, 32, 3], np.float32))
    with pytest.raises(ValueError, match=r"images \[batch, height, width, channels\].*\(28, 28, 1\)"):
        vae.encode(np.zeros(IMAGE_SHAPE, np.float32))  # one image without its batch axis
    decoder = nets.Decoder((16,), IMAGE_SHAPE)
    decoder(tf.zeros([2, LATENT]))
    with pytest.raises(ValueError, match=r"this decoder was built for codes of size 3; got codes of shape \(2, 7\)"):
        decoder(tf.zeros([2, 7]))


# 3 ------------------------------------------------------------------ the VAE knows its latent size
def test_decoding_codes_of_the_wrong_size_before_any_encode_is_refused():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"this model's latent codes have size 3; got codes of shape \(5, 7\)"):
        vae.decode(np.zeros([5, 7], np.float32))
    assert vae.decode(np.zeros([5, LATENT], np.float32)).mean().shape == [5, *IMAGE_SHAPE]


# 4 ------------------------------------------------------------------ an unreadable image file is named
def test_from_directory_names_an_unreadable_image(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "good.png").write_bytes(tf.io.encode_png(np.zeros((6, 5, 1), np.uint8)).numpy())
    (folder / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"broken\.png"):
        data.from_directory(folder, batch_size=2)


# 5 ------------------------------------------------------------------ a skipped damaged checkpoint is said
def test_resuming_past_a_damaged_checkpoint_says_so_in_one_line(tmp_path, mnist_data_dir, capsys):
    # tiny: 200 images at batch 32 = 7 steps an epoch; checkpoints at steps 2, 4, 6 and 7.
    arguments = ["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", tmp_path / "run",
                 "--no-progress", "--no-figures", "--no-tensorboard", "--set", "train.checkpoint_every=2",
                 "--set", "train.max_checkpoints=4"]  # fmt: skip
    assert run_cli(*arguments) == 0
    newest = next((tmp_path / "run" / "checkpoints").glob("ckpt-7.data-*"))
    newest.write_bytes(newest.read_bytes()[:10])  # truncated, as by a full disk
    capsys.readouterr()
    assert run_cli(*arguments, "--epochs", 2) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("tfvae: warning: checkpoint ckpt-7 in ") and "continuing from ckpt-6 (step 6)" in warnings[0]
    # From the API it is a warning of its own class.
    for later in (tmp_path / "run" / "checkpoints").glob("ckpt-14.data-*"):
        later.write_bytes(b"damaged")
    with pytest.warns(rundir.CheckpointWarning, match=r"ckpt-14 in .* is damaged.*continuing from ckpt-12 \(step 12\)"):
        rundir.restore_model(tmp_path / "run")


# 6 ------------------------------------------------------------------ seconds per epoch after a resume
def test_seconds_per_epoch_is_the_steady_state_figure_after_a_resume():
    # Two epochs of 40 steps, logged every 10; each interval takes 2 s, so an epoch's steps take 8 s. The run was
    # trained one epoch per session, and each session spent 17 s compiling in its first interval (the old figure,
    # total wall time over epochs, said 24 s per epoch).
    intervals = np.array([19.0, 2, 2, 2, 19, 2, 2, 2])
    history = pd.DataFrame({"step": np.arange(1, 9) * 10, "epoch": np.arange(1, 9) / 4, "train_loss": 100.0,
                            "test_loss": [np.nan, np.nan, np.nan, 100.0] * 2, "wall_time": np.cumsum(intervals)})
    summary = rundir.run_summary(history)
    assert summary["seconds_per_epoch"] == pytest.approx(8.0)
    assert summary["wall_time"] == pytest.approx(50.0)  # the total still counts everything
    # A session started mid-epoch is an outlier among the intervals, left out too.
    intervals[2] = 19.0
    history["wall_time"] = np.cumsum(intervals)
    assert rundir.run_summary(history)["seconds_per_epoch"] == pytest.approx(8.0)
    # Epoch ends are told by the epoch column, not by a test loss (train.test_every > 1 leaves some out).
    assert rundir.steady_seconds_per_epoch(history.assign(test_loss=np.nan)) == pytest.approx(8.0)


# 7 ------------------------------------------------------------------ TensorFlow's start-up lines are not shown
@pytest.mark.slow  # 14 s of subprocesses importing TensorFlow
def test_commands_do_not_show_tensorflows_start_up_lines(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "tfvae.cli", "evaluate", str(tmp_path / "missing")]
    quiet = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [
        f"tfvae: error: {tmp_path / 'missing'} is not a run directory: it has no config.json"
    ]
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True, env=environment, timeout=300)
    assert verbose.returncode == 2 and verbose.stderr.strip().splitlines()[-1].startswith("tfvae: error:")
    assert len(verbose.stderr.strip().splitlines()) > 1  # what was held back during the import is shown


# 8 ------------------------------------------------------------------ no test=nan in the progress bar
def test_the_progress_bar_shows_a_test_loss_only_once_there_is_one(tmp_path, monkeypatch):
    postfixes = []

    class RecordingBar:
        def __init__(self, *args, **kwargs):
            pass

        def set_postfix(self, ordered_dict=None, refresh=True, **values):
            postfixes.append({**(ordered_dict or {}), **values})

        def update(self, *args):
            pass

        def close(self):
            pass

    monkeypatch.setattr(train, "tqdm", RecordingBar)
    images = (np.random.default_rng(0).random((32, 4, 4, 1)) < 0.5).astype(np.float32)
    experiment = config.override(config.preset("tiny"), {"data.batch_size": 8, "model.hidden_sizes": [8],
                                                         "train.epochs": 2, "train.log_every": 2})  # fmt: skip
    train.fit(experiment, tmp_path / "run", train_data=data.from_arrays(images, batch_size=8, prefetch=False),
              test_data=data.from_arrays(images, batch_size=8))  # fmt: skip
    assert len(postfixes) == 4  # rows at steps 2, 4 (epoch 1), 6, 8 (epoch 2)
    assert all("nan" not in str(value) for postfix in postfixes for value in postfix.values()), postfixes
    assert "test" not in postfixes[0] and "test" in postfixes[1] and "test" in postfixes[2]
    assert postfixes[2]["test"] == postfixes[1]["test"]  # mid-epoch: the last test loss


# 9 ------------------------------------------------------------------ a full disk is not "out of memory"
def test_a_full_disk_is_told_apart_from_out_of_memory(tmp_path, mnist_data_dir, capsys, monkeypatch):
    disk_full = tf.errors.ResourceExhaustedError(
        None, None, "runs/x/checkpoints/ckpt-7_temp/part-00000-of-00001.data-00000-of-00001.tempstate1; "
                    "No space left on device")  # fmt: skip
    memory = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[128,784]")
    assert "out of memory" in cli._tensorflow_error_line(memory)
    line = cli._tensorflow_error_line(disk_full, run_dir="runs/x")
    assert "out of memory" not in line
    assert "the disk holding runs/x is full; free space and run the same command again" in line

    def save_on_a_full_disk(*args, **kwargs):
        raise disk_full

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_on_a_full_disk)
    status = run_cli("train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", tmp_path / "run",
                     "--no-progress", "--no-figures", "--no-tensorboard")  # fmt: skip
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and error[-1].startswith("tfvae: error:"), error
    assert f"the disk holding {tmp_path / 'run'} is full; free space and run the same command again" in error[-1]

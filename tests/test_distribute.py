"""Distribution: a mirrored run over two (logical) devices follows the single-device loss curve."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from tfvae import cli, config, distribute, optimizers

# Runs in its own process: the CPU must be split into two logical devices
# before TensorFlow initialises its devices. `fit` trains the same experiment
# with train.distribute "default" and "mirrored" (over /CPU:0 and /CPU:1, the
# two logical devices), on 41 images in global batches of 8: 5 full batches
# split 4 + 4 and a last one of 1, split 1 + 0 (one replica gets no image).
FIT_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from tfvae import config, data, rundir, train

    def images(n, seed):
        rng = np.random.default_rng(seed)
        prototypes = rng.random((4, 8, 8, 1)) < 0.4
        return np.logical_xor(prototypes[rng.integers(0, 4, n)], rng.random((n, 8, 8, 1)) < 0.05).astype(np.float32)

    TRAIN, TEST = np.split(images(57, 0), [41])

    class Interrupt(Exception):
        pass

    def stop_at(step_to_stop):
        def hook(step, model, row):
            if step >= step_to_stop:
                raise Interrupt
        return hook

    def fit(run_dir, changes, hooks=(), pipeline=False):
        # No XLA for the one-device runs: the same steps as with it (to rounding), and 10 s less compiling.
        base = {"model.hidden_sizes": [16], "model.latent_size": 2, "data.batch_size": 8, "train.epochs": 4,
                "train.log_every": 3, "train.jit_compile": False}
        experiment = config.override(config.preset("tiny"), {**base, **changes})
        tf.random.set_seed(experiment.train.seed)  # as fit does, so the shuffles are fit's
        train_data = data.from_arrays(TRAIN, batch_size=8, shuffle=True, seed=1, prefetch=False)
        if pipeline:  # any other tf.data pipeline: the runner restarts it and skips to the step
            train_data = train_data.as_dataset().map(lambda images: images)
        test_data = data.from_arrays(TEST, batch_size=8)
        result = train.fit(experiment, run_dir, train_data=train_data, test_data=test_data, hooks=hooks, progress=False)
        history = result.history
        restored = rundir.restore_model(run_dir, (8, 8, 1))  # what evaluate and export read back
        return {"train_loss": history["train_loss"].tolist(), "test_loss": history["test_loss"].dropna().tolist(),
                "step": history["step"].tolist(), "kinds": sorted({type(v).__name__ for v in result.model.variables}),
                "weights": np.concatenate([v.numpy().ravel() for v in result.model.trainable_variables]).tolist(),
                "restored": np.concatenate([v.numpy().ravel() for v in restored.trainable_variables]).tolist()}

    root = tempfile.mkdtemp()
    # The autoencoder (a deterministic encoder, beta 0) takes the draws of z out; plain SGD, unlike
    # Adam, moves twice as far on a gradient twice too large, so a wrong loss scaling shows.
    autoencoder = {"model.deterministic_encoder": True, "train.beta": 0.0, "train.optimizer": "sgd",
                   "train.learning_rate": 0.05}
    vae = {"train.learning_rate": 1e-2, "train.kl_schedule": "linear", "train.warmup_steps": 12}
    mirrored = {"train.distribute": "mirrored"}
    results = {}
    for name, changes in (("autoencoder", autoencoder), ("vae", vae)):
        results[f"default/{name}"] = fit(f"{root}/default-{name}", changes)
        results[f"mirrored/{name}"] = fit(f"{root}/mirrored-{name}", {**changes, **mirrored})
    # What a step that summed the replicas' mean gradients (no scaling by their share) would do on 2 replicas.
    results["default/autoencoder_twice_the_step"] = fit(
        f"{root}/twice", {**autoencoder, "train.learning_rate": 2 * autoencoder["train.learning_rate"]})
    try:  # dies at step 9, after the checkpoint at the end of epoch 1 (step 6)
        fit(f"{root}/split", {**vae, **mirrored}, hooks=[stop_at(9)])
    except Interrupt:
        pass
    results["mirrored/vae_resumed"] = fit(f"{root}/split", {**vae, **mirrored})
    results["mirrored/pipeline"] = fit(f"{root}/pipeline", {**vae, **mirrored}, pipeline=True)
    try:
        fit(f"{root}/pipeline-split", {**vae, **mirrored}, hooks=[stop_at(9)], pipeline=True)
    except Interrupt:
        pass
    results["mirrored/pipeline_resumed"] = fit(f"{root}/pipeline-split", {**vae, **mirrored}, pipeline=True)
    # Started on one device (train.device cpu), continued on two (auto, mirrored), and the other way round.
    one_device = {"train.distribute": "default", "train.device": "cpu"}
    for first, then in (("default", "mirrored"), ("mirrored", "default")):
        placements = {"default": one_device, "mirrored": mirrored}
        try:
            fit(f"{root}/{first}-then-{then}", {**autoencoder, **placements[first]}, hooks=[stop_at(9)])
        except Interrupt:
            pass
        results[f"{first}_then_{then}/autoencoder"] = fit(f"{root}/{first}-then-{then}",
                                                          {**autoencoder, **placements[then]})
        with open(f"{root}/{first}-then-{then}/config.json") as stream:
            results[f"{first}_then_{then}/autoencoder"]["distribute"] = json.load(stream)["train"]["distribute"]
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    script = tmp_path_factory.mktemp("distribute") / "fit.py"
    script.write_text(FIT_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # the module's mirrored runs take 40 s: make test keeps the one-process checks
def test_a_mirrored_fit_runs_on_mirrored_variables_that_single_device_code_restores(runs):
    assert runs["mirrored/vae"]["kinds"] == ["MirroredVariable"]
    assert runs["default/vae"]["kinds"] == ["ResourceVariable"]
    for run in ("mirrored/vae", "mirrored/autoencoder"):  # the checkpoint restores into a one-device model
        np.testing.assert_array_equal(runs[run]["restored"], runs[run]["weights"])


@pytest.mark.slow  # the module's mirrored runs take 40 s: make test keeps the one-process checks
def test_mirrored_fit_gives_the_single_device_loss_curve_when_z_is_deterministic(runs):
    # No draws of z: what is left is the batch split (down to a replica with no
    # image), the loss scaling, the all-reduce, the update and the
    # example-weighted sums in history.csv. 8 rows over 24 steps, and the test ELBO at 4 epoch ends.
    single, mirrored = (runs[f"{kind}/autoencoder"] for kind in ("default", "mirrored"))
    assert mirrored["step"] == single["step"] == [3, 6, 9, 12, 15, 18, 21, 24]
    assert single["train_loss"][-1] < single["train_loss"][0] - 5  # it learns (nats per 8x8 image)
    np.testing.assert_allclose(mirrored["train_loss"], single["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(mirrored["test_loss"], single["test_loss"], rtol=1e-5)
    # Float rounding (a sum over two halves, not one batch): measured at most 2.8e-5 after 24 SGD steps.
    np.testing.assert_allclose(mirrored["weights"], single["weights"], atol=1e-4)
    # The tolerance can fail: a step twice too large (the replicas' mean gradients
    # summed instead of weighted by their share) moves the curve by > 1e-2.
    twice = np.array(runs["default/autoencoder_twice_the_step"]["train_loss"])
    assert np.abs(twice / single["train_loss"] - 1).max() > 1e-2


@pytest.mark.slow  # the module's mirrored runs take 40 s: make test keeps the one-process checks
def test_mirrored_fit_follows_the_single_device_loss_curve_with_sampled_z(runs):
    # The second replica draws other z than the single device does for the
    # same images, so the curves agree up to Monte Carlo error: measured at most
    # 0.78 nats per row (mean 0.32) on losses of 38-45 nats (README: 0.3 and 0.8).
    single, mirrored = (np.array(runs[f"{kind}/vae"]["train_loss"]) for kind in ("default", "mirrored"))
    assert single[-1] < single[0] - 5 and mirrored[-1] < mirrored[0] - 5
    difference = np.abs(mirrored - single)
    assert difference.max() < 1.5 and difference.mean() < 0.5
    np.testing.assert_allclose(runs["mirrored/vae"]["test_loss"], runs["default/vae"]["test_loss"], rtol=0.03)


@pytest.mark.slow  # the module's mirrored runs take 40 s: make test keeps the one-process checks
@pytest.mark.parametrize("data", ["vae", "pipeline"])
def test_an_interrupted_mirrored_fit_resumes_to_the_uninterrupted_result(runs, data):
    # Weights, Adam, step and loop sums come from the checkpoint; z is seeded by
    # the step; the data restart at the step's batch: made from the step for
    # in-memory data ("vae"), by skipping `step` batches of any other pipeline.
    # README: "resumes to the uninterrupted weights to the last bit".
    whole, resumed = runs[f"mirrored/{data}"], runs[f"mirrored/{data}_resumed"]
    assert resumed["step"] == whole["step"]
    np.testing.assert_array_equal(resumed["train_loss"], whole["train_loss"])
    np.testing.assert_array_equal(resumed["test_loss"], whole["test_loss"])
    np.testing.assert_array_equal(resumed["weights"], whole["weights"])


@pytest.mark.slow  # the module's mirrored runs take 40 s: make test keeps the one-process checks
@pytest.mark.parametrize("first, then", [("default", "mirrored"), ("mirrored", "default")])
def test_a_run_continues_on_another_number_of_devices(runs, first, then):
    # Stopped at step 9 on one device (or two), continued from its step-6 checkpoint on two (or one), with
    # train.device and train.distribute changed: the rows before the checkpoint are the first setting's,
    # the rest follow it to the float rounding of a batch split in two (as in the test above).
    changed, uninterrupted = runs[f"{first}_then_{then}/autoencoder"], runs[f"{first}/autoencoder"]
    assert changed["distribute"] == then and changed["step"] == uninterrupted["step"]
    np.testing.assert_array_equal(changed["train_loss"][:2], uninterrupted["train_loss"][:2])  # steps 3, 6
    np.testing.assert_allclose(changed["train_loss"], uninterrupted["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(changed["test_loss"], uninterrupted["test_loss"], rtol=1e-5)
    np.testing.assert_allclose(changed["weights"], uninterrupted["weights"], atol=1e-4)
    assert changed["kinds"] == ["MirroredVariable" if then == "mirrored" else "ResourceVariable"]


@pytest.mark.parametrize("text, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("not json", "TF_CONFIG must look like"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "non-empty list"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "index below 1"),
])
def test_multi_worker_without_a_usable_tf_config_is_a_clear_error(text, message, monkeypatch):
    if text is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(distribute.DistributeError, match=message):
        distribute.build_strategy("multi_worker")


def test_strategy_names_are_validated():
    with pytest.raises(config.ConfigError, match="train.distribute must be one of default, mirrored, multi_worker"):
        config.TrainConfig(distribute="horovod")
    with pytest.raises(distribute.DistributeError, match="must be one of"):
        distribute.build_strategy("horovod")
    assert distribute.build_strategy("default").num_replicas_in_sync == 1


def test_cli_documents_distribute_and_precision(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "sets train.distribute; default (one device) | mirrored (every local GPU) | multi_worker" in text
    assert "sets train.precision; float32 | mixed_float16 | mixed_bfloat16" in text


def test_cli_trains_with_the_mirrored_strategy(tmp_path, mnist_data_dir, capsys):
    # One replica here (one CPU device in this process); the two-device case is above.
    run_dir = tmp_path / "run"
    status = cli.main(["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", str(run_dir),
                       "--distribute", "mirrored", "--no-progress", "--no-figures"])
    assert status == 0, capsys.readouterr().err
    assert (run_dir / "metrics.json").is_file() and (run_dir / "tensorboard" / "train").is_dir()
    assert json.loads((run_dir / "config.json").read_text())["train"]["distribute"] == "mirrored"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def train_command(run_dir, data_dir, epochs: int, distribute: str) -> list[str]:
    # The autoencoder: no draws of z, so the runs agree to float rounding. (Adam: SGD diverges on 784-pixel sums.)
    return [sys.executable, "-m", "tfvae.cli", "train", "--preset", "tiny", "--data-dir", data_dir, "--run-dir",
            str(run_dir), "--epochs", str(epochs), "--distribute", distribute, "--beta", "0", "--learning-rate", "0.01",
            "--set", "model.deterministic_encoder=true", "--set", "train.log_every=2", "--no-progress", "--no-figures"]


def start_workers(run_dirs, data_dir, epochs: int, scratch, timeout=600) -> list[tuple[int, str, str]]:
    """Two workers of `tfvae train --distribute multi_worker` on this machine, worker i on run_dirs[i]: a
    (status, stdout, stderr) per worker."""
    workers = [f"localhost:{free_port()}" for _ in range(2)]
    processes = [
        subprocess.Popen(
            train_command(run_dir, data_dir, epochs, "multi_worker"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(scratch), TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})),
        )
        for index, run_dir in enumerate(run_dirs)
    ]
    try:
        finished = [process.communicate(timeout=timeout) for process in processes]
    except subprocess.TimeoutExpired:  # workers waiting on each other: end them, then fail
        for process in processes:
            process.kill()
            process.wait()
        raise
    return [(process.returncode, stdout, stderr) for process, (stdout, stderr) in zip(processes, finished)]


def run_workers(run_dir, data_dir, epochs: int, scratch) -> list[str]:
    """Two workers of `tfvae train --distribute multi_worker` sharing `run_dir`; their stdout."""
    finished = start_workers([run_dir, run_dir], data_dir, epochs, scratch)
    for index, (status, _, stderr) in enumerate(finished):
        assert status == 0, f"worker {index}: {stderr[-3000:]}"
    return [stdout for _, stdout, _ in finished]


def learnable_mnist(data_dir) -> str:
    """An offline "MNIST" of 200 + 40 noisy copies of 4 random 28x28 prototypes (the fixture's is pure noise)."""
    from conftest import write_idx

    from tfvae import data

    rng = np.random.default_rng(0)
    prototypes = rng.random((4, 28, 28)) < 0.3
    folder = data.manual_dir("mnist", data_dir)
    folder.mkdir(parents=True)
    for prefix, n in (("train", 200), ("t10k", 40)):
        images = np.logical_xor(prototypes[rng.integers(0, 4, n)], rng.random((n, 28, 28)) < 0.05) * 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress=False)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), compress=False)
    for split in ("train", "test"):  # prepared once here, not by two workers at the same time
        data.load_arrays("mnist", split, str(data_dir))
    return str(data_dir)


@pytest.mark.slow
def test_two_workers_train_resume_and_follow_the_single_process_run(tmp_path):
    # About 60 s: two TensorFlow processes that wait on each other over gRPC, twice, and a reference run.
    mnist_data_dir = learnable_mnist(tmp_path / "tfds")
    scratch = tmp_path / "scratch"  # the workers' temporary directories
    scratch.mkdir()
    run_dir = tmp_path / "multi"
    run_workers(run_dir, mnist_data_dir, 2, scratch)
    first = pd.read_csv(run_dir / "history.csv")
    chief, worker = run_workers(run_dir, mnist_data_dir, 3, scratch)  # continues from the chief's checkpoint
    single = tmp_path / "single"
    done = subprocess.run(train_command(single, mnist_data_dir, 3, "default"), capture_output=True, text=True,
                          timeout=600, check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]

    multi, reference = pd.read_csv(run_dir / "history.csv"), pd.read_csv(single / "history.csv")
    assert multi["step"].tolist() == reference["step"].tolist() and multi["step"].is_unique  # 7 steps per epoch
    assert multi["step"].max() == 21 and first["step"].max() == 14
    for column in ("train_loss", "test_loss"):
        np.testing.assert_allclose(multi[column], reference[column], rtol=1e-4)
    assert reference["train_loss"].iloc[-1] < reference["train_loss"].iloc[0] - 50  # it learns (nats per image)
    # The chief wrote the run directory; the other worker's scratch copies are gone.
    assert "run directory" in chief and "worker 1 done" in worker
    assert (run_dir / "metrics.json").is_file() and (run_dir / "tensorboard" / "train").is_dir()
    assert sorted(p.name for p in scratch.iterdir()) == []


@pytest.mark.slow
def test_workers_that_restored_different_steps_stop_with_an_error(tmp_path):
    # About 40 s. The chief's run directory holds 2 epochs (trained on one device: distribute may change on
    # resume); worker 1 is pointed at an empty one, as when the run directory is not on a shared file
    # system: it starts at step 0, the chief at step 14. Both must stop, not wait on each other.
    mnist_data_dir = learnable_mnist(tmp_path / "tfds")
    chief_dir, other_dir = tmp_path / "chief", tmp_path / "elsewhere"
    done = subprocess.run(train_command(chief_dir, mnist_data_dir, 2, "default"), capture_output=True, text=True,
                          timeout=600, check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    finished = start_workers([chief_dir, other_dir], mnist_data_dir, 3, scratch, timeout=300)  # waiting: a hang
    message = ("tfvae: error: the workers restored different checkpoints (steps [0, 14]): a multi-worker run "
               "resumes only when every worker reads the chief's run directory (a shared file system)")
    for index, (status, _, stderr) in enumerate(finished):
        assert status == 2 and message in stderr.splitlines(), f"worker {index}: {stderr[-3000:]}"
    assert pd.read_csv(chief_dir / "history.csv")["step"].max() == 14  # the chief's run is untouched


def test_a_non_finite_step_is_reported_and_not_applied():
    import tensorflow as tf

    from tfvae import model
    from tfvae import step as step_lib

    strategy = distribute.build_strategy("default")
    settings = config.TrainConfig(on_nonfinite="skip")
    with strategy.scope():
        vae = model.build(config.ModelConfig(hidden_sizes=(4,), latent_size=2), (2, 2, 1))
        vae(tf.zeros([1, 2, 2, 1]))
    optimizer = optimizers.build_optimizer(vae, 1e-3)
    before = [v.numpy() for v in vae.trainable_variables]
    images = tf.constant([[[[float("nan")], [0.0]], [[1.0], [0.0]]]])
    step = tf.function(lambda x: step_lib.train_step(
        vae, optimizer, x, tf.constant([0, 0]), tf.constant(0, tf.int64), step_lib.training_loss(settings), settings,
        gradients_fn=distribute.replicated_gradients(strategy)))
    finite = step(images).finite
    assert finite.shape == [4] and not finite.numpy()[0] and not finite.numpy()[3]  # the loss and the gradients
    for old, new in zip(before, vae.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())

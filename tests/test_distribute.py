"""Distribution: a mirrored run over two (logical) devices follows the single-device loss curve."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfvae import cli, config, distribute

# Runs in its own process: the CPU must be split into two logical devices
# before TensorFlow initialises its devices. Trains the same model from the
# same weights on the same global batches with the default strategy and with
# MirroredStrategy over /CPU:0 and /CPU:1, and prints both loss curves.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from tfvae import config, distribute, train

    # One strategy of each kind per process, as in a real run (two MirroredStrategy
    # objects in one process would reuse each other's collective instance keys).
    strategies = {"default": distribute.build_strategy("default"),
                  "mirrored": distribute.build_strategy("mirrored", ["/CPU:0", "/CPU:1"])}

    def run(strategy_name, deterministic_encoder):
        strategy = strategies[strategy_name]
        tf.random.set_seed(0)
        model_config = config.ModelConfig(
            hidden_sizes=(32,), latent_size=2, deterministic_encoder=deterministic_encoder
        )
        # The autoencoder (beta 0) with the deterministic encoder; the VAE with a KL warm-up otherwise.
        settings = (config.TrainConfig(learning_rate=3e-3, beta=0.0) if deterministic_encoder else
                    config.TrainConfig(learning_rate=3e-3, kl_schedule="linear", warmup_steps=20))
        vae, optimizer = distribute.build_replicated(
            strategy, model_config, (8, 8, 1), lambda model: train.build_optimizer(model, settings.learning_rate)
        )
        step = distribute.make_distributed_step(strategy, vae, optimizer, settings)
        rng = np.random.default_rng(0)
        prototypes = rng.random((4, 8, 8, 1)) < 0.4
        images = np.logical_xor(prototypes[rng.integers(0, 4, 100)], rng.random((100, 8, 8, 1)) < 0.05)
        # Global batch 24: 4 full batches and a last one of 4, split 2 + 2 (the rest 12 + 12).
        dataset = tf.data.Dataset.from_tensor_slices(images.astype(np.float32)).batch(24)
        losses, number = [], 0
        for epoch in range(4):
            for batch in strategy.experimental_distribute_dataset(dataset):
                terms, finite = step(batch, tf.constant(number, tf.int64), tf.constant([epoch, number], tf.int32))
                assert finite.numpy().tolist() == [True] * 4
                losses.append(float(terms.loss))
                number += 1
        kinds = sorted({type(v).__name__ for v in vae.trainable_variables})
        weights = [v.numpy().ravel() for v in vae.trainable_variables]
        return {"losses": losses, "replicas": strategy.num_replicas_in_sync, "kinds": kinds,
                "weights": np.concatenate(weights).tolist()}

    results = {f"{name}/{kind}": run(name, kind == "deterministic")
               for kind in ("deterministic", "stochastic") for name in ("default", "mirrored")}
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    script = tmp_path_factory.mktemp("distribute") / "run.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mirrored_run_uses_two_replicas_and_mirrored_weights(curves):
    assert curves["mirrored/stochastic"]["replicas"] == 2 and curves["default/stochastic"]["replicas"] == 1
    assert curves["mirrored/stochastic"]["kinds"] == ["MirroredVariable"]


def test_mirrored_loss_curve_equals_the_single_device_one_when_z_is_deterministic(curves):
    # A deterministic encoder (z = f(x) +- 1e-4) takes the draws of z out, so what
    # is left is the batch split, the loss scaling, the all-reduce and the update:
    # they must agree to float rounding, over 20 steps with an uneven last batch.
    single, mirrored = (np.array(curves[f"{name}/deterministic"]["losses"]) for name in ("default", "mirrored"))
    assert len(single) == 20 and single[-1] < single[0] - 5  # it learns
    np.testing.assert_allclose(mirrored, single, rtol=1e-4)
    # Adam divides by the gradient's scale, so a weight whose gradient is ~0 can move by up to
    # the learning rate (3e-3) on a rounding difference (here at most 2.5e-4); most agree to 1e-6.
    weights = [np.array(curves[f"{name}/deterministic"]["weights"]) for name in ("default", "mirrored")]
    difference = np.abs(weights[1] - weights[0])
    assert difference.max() < 1e-3 and np.median(difference) < 1e-5


def test_mirrored_loss_curve_follows_the_single_device_one_with_sampled_z(curves):
    # With sampled z the second replica draws other noise than the single device
    # does for those examples: the curves agree up to Monte Carlo error only.
    # Per epoch (as history.csv reports them) they agree within 2 %; single steps,
    # down to the last batch of 4 images, within 10 %.
    single, mirrored = (np.array(curves[f"{name}/stochastic"]["losses"]) for name in ("default", "mirrored"))
    assert single[-1] < single[0] - 3 and mirrored[-1] < mirrored[0] - 3
    np.testing.assert_allclose(mirrored, single, rtol=0.1)
    sizes = np.tile([24, 24, 24, 24, 4], 4)
    epoch_means = [np.add.reduceat(curve * sizes, range(0, 20, 5)) / 100 for curve in (single, mirrored)]
    np.testing.assert_allclose(epoch_means[1], epoch_means[0], rtol=0.02)


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


def test_cli_refuses_a_strategy_that_fit_does_not_run_yet(tmp_path, capsys):
    status = cli.main(["train", "--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--distribute", "mirrored"])
    error = capsys.readouterr().err
    assert status == 2 and "not wired into `tfvae train` yet" in error and error.count("\n") == 1, error
    assert not (tmp_path / "run").exists()


# One worker of a multi-worker run (or, with STRATEGY=default, the single-device reference).
WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    from tfvae import config, distribute, train

    strategy = distribute.build_strategy(os.environ["STRATEGY"])
    tf.random.set_seed(0)
    settings = config.TrainConfig(learning_rate=3e-3, beta=0.0)
    model_config = config.ModelConfig(hidden_sizes=(32,), latent_size=2, deterministic_encoder=True)
    vae, optimizer = distribute.build_replicated(
        strategy, model_config, (8, 8, 1), lambda model: train.build_optimizer(model, settings.learning_rate)
    )
    step = distribute.make_distributed_step(strategy, vae, optimizer, settings)
    images = (np.random.default_rng(0).random((96, 8, 8, 1)) < 0.4).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(24)  # the global batch, split over the workers
    losses, number = [], 0
    for epoch in range(2):
        for batch in strategy.experimental_distribute_dataset(dataset):
            terms, finite = step(batch, tf.constant(number, tf.int64), tf.constant([epoch, number], tf.int32))
            assert finite.numpy().all()
            losses.append(float(terms.loss))
            number += 1
    print(json.dumps({"losses": losses, "replicas": strategy.num_replicas_in_sync}))
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_this_machine_follow_the_single_device_loss_curve(tmp_path):
    # About 20 s of CPU, but two TensorFlow processes that wait on each other over gRPC.
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [f"localhost:{free_port()}" for _ in range(2)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    processes = [
        subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(environment, STRATEGY="multi_worker", TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})),
        )
        for index in range(2)
    ] + [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(environment, STRATEGY="default"))]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    first, second, single = results
    assert first["replicas"] == second["replicas"] == 2 and single["replicas"] == 1
    assert first["losses"] == second["losses"]  # every worker sees the same all-reduced numbers
    np.testing.assert_allclose(first["losses"], single["losses"], rtol=1e-4)


def test_a_non_finite_step_is_reported_and_not_applied():
    import tensorflow as tf

    from tfvae import train

    strategy = distribute.build_strategy("default")
    settings = config.TrainConfig()
    vae, optimizer = distribute.build_replicated(
        strategy, config.ModelConfig(hidden_sizes=(4,), latent_size=2), (2, 2, 1),
        lambda model: train.build_optimizer(model, 1e-3),
    )
    before = [v.numpy() for v in vae.trainable_variables]
    step = distribute.make_distributed_step(strategy, vae, optimizer, settings)
    images = tf.constant([[[[float("nan")], [0.0]], [[1.0], [0.0]]]])
    terms, finite = step(images, tf.constant(0, tf.int64), tf.constant([0, 0]))
    assert finite.shape == [4] and not finite.numpy()[0] and not finite.numpy()[3]  # the loss and the gradients
    for old, new in zip(before, vae.trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())

"""Model families resume exactly: one with parts of its own by default; with `-m slow` every family, on one
device and mirrored over two (which also trains each one).

The families' own math is tested beside each (test_priors, test_flows, test_hierarchy, test_tc, test_families,
test_conditional); here each goes through what `fit` adds: checkpoints of its own variables (a learned prior's
components, pseudo-inputs, flow networks, class images), a stop and a resume, and `tf.distribute`.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

FAMILIES = {
    "mixture": {"model.prior": "mixture", "model.prior_components": 3},
    "vampprior": {"model.prior": "vamp", "model.prior_components": 4},
    "two_layer": {"model.architecture": "two_layer", "model.top_latent_size": 2, "model.top_hidden_sizes": [8]},
    "iaf": {"model.posterior": "iaf", "model.flow_steps": 2},
    "coupling": {"model.posterior": "coupling"},
    "dreg": {"train.objective": "iwae", "train.iwae_k": 3, "train.gradient": "dreg"},
    "tcvae": {"train.tc_weight": 3.0},
    "conditional": {"model.conditional": True, "model.num_classes": 4},
}

# The default suite resumes one family with parts of its own to checkpoint (the VampPrior: learned pseudo-inputs
# and their encoder pass, ~20 s here); -m slow resumes all of them (those with a second layer, flow networks or
# class images too), on one device and mirrored.
ONE_DEVICE = ["vampprior"]

# One process for all (TensorFlow must split the CPU into two logical devices before it starts): for each
# family, fit 3 epochs of 41 images in batches of 8 on one device and mirrored, each straight through and
# stopped at step 9 (after the checkpoint at step 6) then resumed.
SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from tfvae import config, data, train

    FAMILIES, DEVICES = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    rng = np.random.default_rng(0)
    prototypes = rng.random((4, 8, 8, 1)) < 0.4
    LABELS = rng.integers(0, 4, 57)
    IMAGES = np.logical_xor(prototypes[LABELS], rng.random((57, 8, 8, 1)) < 0.05).astype(np.float32)

    class Interrupt(Exception):
        pass

    def stop_at_9(step, model, row):
        if step >= 9:
            raise Interrupt

    def fit(run_dir, changes, hooks=()):
        base = {"model.hidden_sizes": [16], "model.latent_size": 2, "data.batch_size": 8, "train.epochs": 3,
                "train.log_every": 3, "train.jit_compile": False, "train.learning_rate": 1e-2}
        experiment = config.override(config.preset("tiny"), {**base, **changes})
        train_data = data.from_arrays(IMAGES[:41], LABELS[:41], batch_size=8, shuffle=True, seed=1, prefetch=False)
        test_data = data.from_arrays(IMAGES[41:], LABELS[41:], batch_size=8)
        result = train.fit(experiment, run_dir, train_data=train_data, test_data=test_data, hooks=hooks,
                           progress=False)
        return {"train_loss": result.history["train_loss"].tolist(),
                "test_loss": result.history["test_loss"].dropna().tolist(),
                "kinds": sorted({type(v).__name__ for v in result.model.variables}),
                "weights": np.concatenate([v.numpy().ravel() for v in result.model.trainable_variables]).tolist()}

    root = tempfile.mkdtemp()
    results = {}
    for family, changes in FAMILIES.items():
        for device in DEVICES:
            settings = {**changes, "train.distribute": device}
            results[f"{family}/{device}"] = fit(f"{root}/{family}-{device}", settings)
            try:
                fit(f"{root}/{family}-{device}-split", settings, hooks=[stop_at_9])
            except Interrupt:
                pass
            results[f"{family}/{device}/resumed"] = fit(f"{root}/{family}-{device}-split", settings)
    print(json.dumps(results))
    """
)


def run_families(tmp_path_factory, families: list[str], devices: list[str]) -> dict:
    script = tmp_path_factory.mktemp("families") / "fit.py"
    script.write_text(SCRIPT)
    chosen = {family: FAMILIES[family] for family in families}
    done = subprocess.run([sys.executable, str(script), json.dumps(chosen), json.dumps(devices)],
                          capture_output=True, text=True, timeout=1200, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    return run_families(tmp_path_factory, ONE_DEVICE, ["default"])  # ~20 s here


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    return run_families(tmp_path_factory, list(FAMILIES), ["default", "mirrored"])  # ~8 minutes here


@pytest.mark.slow  # 16 s: the VampPrior's resume; the custom-model and train resume tests stay in make test
@pytest.mark.parametrize("family", ONE_DEVICE)
def test_a_stopped_run_of_a_family_resumes_to_the_uninterrupted_result(one_device, family):
    whole, resumed = one_device[f"{family}/default"], one_device[f"{family}/default/resumed"]
    np.testing.assert_array_equal(resumed["weights"], whole["weights"])  # one device: bit for bit
    np.testing.assert_array_equal(resumed["train_loss"], whole["train_loss"])
    np.testing.assert_array_equal(resumed["test_loss"], whole["test_loss"])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_resumes_exactly_on_one_device(mirrored, family):
    whole, resumed = mirrored[f"{family}/default"], mirrored[f"{family}/default/resumed"]
    np.testing.assert_array_equal(resumed["weights"], whole["weights"])  # one device: bit for bit
    np.testing.assert_array_equal(resumed["train_loss"], whole["train_loss"])
    np.testing.assert_array_equal(resumed["test_loss"], whole["test_loss"])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_mirrored_and_a_stopped_mirrored_run_resumes_to_the_uninterrupted_result(mirrored, family):
    single, whole, resumed = (mirrored[f"{family}/{kind}"] for kind in ("default", "mirrored", "mirrored/resumed"))
    assert whole["kinds"] == ["MirroredVariable"]
    np.testing.assert_allclose(resumed["weights"], whole["weights"], atol=1e-6)
    np.testing.assert_allclose(resumed["train_loss"], whole["train_loss"], rtol=1e-6)
    # Mirrored draws other z than one device does (replica 1 folds its index into the seed), so the
    # curves agree to Monte Carlo error. Both learn: the mean of the last two rows 2 nats or more below that
    # of the first two (measured 3.7 to 4.7 for the learned priors and flows; a last row averages 1 batch of 8
    # and the batch of the one image left over, so one row alone is noisy).
    for run in (single, whole):
        assert np.mean(run["train_loss"][-2:]) < np.mean(run["train_loss"][:2]) - 2, run["train_loss"]
    np.testing.assert_allclose(whole["test_loss"], single["test_loss"], rtol=0.1)

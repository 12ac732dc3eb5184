"""Export: a run's SavedModel loads in a process without tfvae and gives the model's numbers."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfvae import cli, config, model, objectives, rundir, savedmodel

# Runs in a fresh interpreter (-I: no PYTHONPATH, no cwd on sys.path) in which
# importing tfvae, Sonnet or TFP fails, so the SavedModel must stand on TensorFlow alone.
LOADER = textwrap.dedent(
    """
    import sys
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tfvae", "sonnet", "tensorflow_probability"):
                raise ImportError(f"{name} must not be needed to load the export")
    sys.meta_path.insert(0, Refuse())
    import numpy as np
    import tensorflow as tf
    export_dir, inputs_path, outputs_path = sys.argv[1:]
    inputs = dict(np.load(inputs_path))
    vae = tf.saved_model.load(export_dir)
    outputs = {}
    for prefix, result in (
        ("encode", vae.signatures["encode"](images=inputs["images"])),
        ("decode", vae.signatures["decode"](z=inputs["z"])),
        ("sample", vae.sample(tf.constant(int(inputs["n"])), inputs["seed"])),
        ("elbo", vae.signatures["elbo"](images=inputs["images"], seed=inputs["seed"])),
        ("posterior_sample", vae.posterior_sample(inputs["images"], tf.constant(int(inputs["n"])), inputs["seed"])),
        ("prior_log_prob", vae.prior_log_prob(inputs["z"])),
    ):
        outputs.update({f"{prefix}/{key}": value.numpy() for key, value in result.items()})
    outputs["image_shape"] = vae.image_shape.numpy()
    outputs["latent_size"] = vae.latent_size.numpy()
    assert not {"tfvae", "sonnet", "tensorflow_probability"} & {name.split(".")[0] for name in sys.modules}
    np.savez(outputs_path, **outputs)
    """
)


def run_cli(*argv):
    return cli.main([str(arg) for arg in argv])


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    """A `tfvae train` run of the tiny preset with 3 latent dimensions (conftest's TINY_RUN_ARGUMENTS)."""
    return tiny_run


def load_in_fresh_process(export_dir, inputs: dict, tmp_path) -> dict:
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "loader.py").write_text(LOADER)
    done = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "loader.py"), str(export_dir), str(tmp_path / "inputs.npz"),
         str(tmp_path / "outputs.npz")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(tmp_path / "outputs.npz"))


def test_exported_run_loads_without_tfvae_and_gives_the_models_numbers(trained_run, tmp_path, capsys):
    out_dir = tmp_path / "exported"
    assert run_cli("export", trained_run, out_dir) == 0
    assert "encode, decode, sample, elbo" in capsys.readouterr().out
    assert (out_dir / "saved_model.pb").is_file()

    rng = np.random.default_rng(0)
    inputs = {
        "images": (rng.random((5, 28, 28, 1)) < 0.3).astype(np.float32),
        "z": rng.standard_normal((3, 3)).astype(np.float32),
        "n": np.int32(4),
        "seed": np.array([7, 11], np.int32),
    }
    loaded = load_in_fresh_process(out_dir, inputs, tmp_path)

    vae = rundir.restore_model(trained_run)
    seed, images = tf.constant(inputs["seed"]), tf.constant(inputs["images"])
    posterior = vae.encode(images)
    terms = objectives.negative_elbo(vae, images, 1.0, seed=seed)
    expected = {
        "encode/mean": posterior.mean(),
        "encode/scale": posterior.stddev(),
        "decode/mean": vae.decode(tf.constant(inputs["z"])).mean(),
        "sample/images": vae.sample(4, seed=seed),
        "elbo/negative_elbo": terms.loss,
        "elbo/distortion": terms.distortion,
        "elbo/rate": terms.rate,
        "posterior_sample/z": model.draw_latents(posterior, [4], seed=seed),
        "posterior_sample/log_q": posterior.log_prob(model.draw_latents(posterior, [4], seed=seed)),
        "prior_log_prob/log_p": vae.prior.log_prob(tf.constant(inputs["z"])),
    }
    assert set(expected) | {"image_shape", "latent_size", "decode/logits"} == set(loaded)
    np.testing.assert_allclose(tf.sigmoid(loaded["decode/logits"]), loaded["decode/mean"], atol=1e-6)
    for key, value in expected.items():
        np.testing.assert_allclose(loaded[key], value.numpy(), rtol=1e-5, atol=1e-5, err_msg=key)
    assert loaded["sample/images"].shape == (4, 28, 28, 1)
    assert loaded["elbo/negative_elbo"].shape == (5,)
    assert loaded["image_shape"].tolist() == [28, 28, 1] and loaded["latent_size"] == 3
    # The seed is the only source of randomness: another seed, other draws.
    other = vae.sample(4, seed=tf.constant([8, 11]))
    assert not np.allclose(loaded["sample/images"], other.numpy())


def test_in_memory_conv_model_with_normal_likelihood_round_trips(tmp_path):
    tf.random.set_seed(0)
    settings = config.ModelConfig(architecture="conv", conv_channels=(4,), hidden_sizes=(8,), latent_size=3,
                                  likelihood="normal")
    vae = model.build(settings, (6, 6, 2))
    vae(tf.zeros([1, 6, 6, 2]))
    (tmp_path / "out").mkdir()  # an empty directory may be the target
    savedmodel.export(vae, tmp_path / "out")
    loaded = tf.saved_model.load(str(tmp_path / "out"))
    images = tf.random.uniform([2, 6, 6, 2], seed=1)
    seed = tf.constant([3, 4])
    # The SavedModel's graph may fuse ops (Grappler, oneDNN) that eager code runs one by one: a few roundings of
    # float32 (6e-8) in sums of at most 8 terms, so rtol 1e-5, and atol 1e-7 for the means of pixels near 0 or 1.
    np.testing.assert_allclose(loaded.decode(tf.ones([2, 3]))["mean"], vae.decode(tf.ones([2, 3])).mean(), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(
        loaded.elbo(images, seed)["negative_elbo"], objectives.negative_elbo(vae, images, 1.0, seed).loss, rtol=1e-5
    )
    specs = loaded.signatures["encode"].structured_input_signature[1]
    assert specs["images"].shape.as_list() == [None, 6, 6, 2]


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a run directory"),
    ("no_checkpoint", "has no checkpoint yet"),
    ("out_not_empty", "already exists and is a directory that is not empty"),
    ("out_is_file", "already exists and is a file"),
])
def test_export_errors_are_one_clear_line(case, message, trained_run, mnist_data_dir, tmp_path, capsys):
    run_dir, out_dir = trained_run, tmp_path / "out"
    if case == "missing":
        run_dir = tmp_path / "nowhere"
    elif case == "no_checkpoint":
        run_dir = tmp_path / "fresh"
        run_dir.mkdir()
        tiny = config.override(config.preset("tiny"), {"data.data_dir": mnist_data_dir})
        (run_dir / "config.json").write_text(json.dumps(tiny.to_dict()))
    elif case == "out_not_empty":
        out_dir.mkdir()
        (out_dir / "keep.txt").write_text("mine")
    else:
        out_dir.write_text("a file")
    assert run_cli("export", run_dir, out_dir) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
    if case == "out_not_empty":
        assert (out_dir / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".out.*")), "a staging folder was left behind"


def test_an_estimate_written_from_the_exports_signatures_alone_agrees_with_tfvaes(trained_run, tmp_path):
    """benchmarks/independent_loglik.py (TensorFlow and the SavedModel only) against tfvae.evaluate on the same
    images with other draws: the same -log p(x) within 4 standard errors of the difference (k = 200, 40 images)."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "independent_loglik", pathlib.Path(__file__).parents[1] / "benchmarks" / "independent_loglik.py")
    independent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(independent)
    out_dir = tmp_path / "exported"
    savedmodel.export(trained_run, out_dir)
    images = (np.random.default_rng(1).random((40, 28, 28, 1)) < 0.2).astype(np.float32)
    theirs = independent.log_px(tf.saved_model.load(str(out_dir)), images, k=200, seed=5, chunk=100)
    ours = np.asarray(tfvae_evaluate(trained_run, images))
    difference = theirs - ours
    error = difference.std(ddof=1) / np.sqrt(len(difference))
    assert abs(difference.mean()) < 4 * error + 1e-3, (difference.mean(), error)
    assert np.all(np.isfinite(theirs)) and difference.std() < 0.5 * ours.std()  # image by image, not just on average


def tfvae_evaluate(run_dir, images):
    import tfvae

    vae = rundir.restore_model(run_dir)
    return tfvae.evaluate(vae, images, k=200, seed=9, per_example=True)["log_px"]

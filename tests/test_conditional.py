"""The conditional VAE (Sohn et al., 2015): labels reach encoder and decoder, and the model uses them."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tfvae import cli, conditioning, config, data, evaluation, model, objectives, protocol, rundir, train
from tfvae.plots import grids

IMAGE_SHAPE = (8, 8, 1)
CLASSES = 4


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, 8, 8, 1] whose class y in 0..3 puts a vertical bar in column 2y + 1 (pixels flipped w.p. 0.05),
    plus a random horizontal bar in any row: the class says where the vertical bar is, z must say the rest."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    images = np.zeros((n, *IMAGE_SHAPE), np.float32)
    images[np.arange(n), :, 2 * labels + 1, 0] = 1.0
    images[np.arange(n), rng.integers(0, 8, n), :, 0] = 1.0
    flips = rng.random(images.shape) < 0.05
    return np.logical_xor(images > 0.5, flips).astype(np.float32), labels


def experiment(**changes) -> config.Experiment:
    base = {"model.hidden_sizes": [32], "model.latent_size": 2, "model.num_classes": CLASSES, "data.batch_size": 32,
            "train.epochs": 4, "train.log_every": 50, "train.learning_rate": 3e-3, "train.jit_compile": False}
    return config.override(config.preset("tiny"), {**base, **changes})


def built(conditional: bool = True) -> model.VAE:
    tf.random.set_seed(1)
    vae = model.build(experiment(**{"model.conditional": conditional}).model, IMAGE_SHAPE)
    rundir.create_variables(vae, IMAGE_SHAPE)
    return vae


def test_labels_reach_the_encoder_and_the_decoder_and_a_given_model_is_an_unconditional_one():
    vae = built()
    assert isinstance(vae, model.ConditionalVAE) and vae.side_data == ("label",)
    images, labels = bars(6, 0)
    vae.encoder.class_images.assign(tf.random.stateless_normal(vae.encoder.class_images.shape, [1, 1]))
    z = tf.random.stateless_normal([6, 2], [2, 2])
    q0, q1 = (vae.encode(images, tf.fill([6], y)).mean() for y in (0, 1))
    p0, p1 = (vae.decode(z, tf.fill([6], y)).mean() for y in (0, 1))
    assert np.abs(q0 - q1).max() > 1e-3 and np.abs(p0 - p1).max() > 1e-3  # the class changes both
    # The encoder sees x + B[y]: the same as its inner encoder on that image. The same ops on the same inputs,
    # but the encoder's means can be near 0, where a last-bit difference (a kernel chosen otherwise) is a large
    # relative one: atol 1e-6 (a few roundings of float32's 6e-8 in a sum of 64 pixels' terms of size ~1).
    offsets = tf.reshape(tf.gather(vae.encoder.class_images, labels), [6, *IMAGE_SHAPE])
    np.testing.assert_allclose(vae.encode(images, labels).mean(), vae.encoder.encoder(images + offsets).mean(),
                               rtol=1e-6, atol=1e-6)
    # The decoder sees [z, onehot(y)], and one label stands for a whole batch (or for many draws per image).
    # Another batch shape may take another matrix-product kernel, which sums in another order: the logits move
    # by a few roundings (6e-8) of their hidden layer's terms, and a pixel's mean p by (1 - p) times that,
    # relative; rtol 1e-5, atol 1e-7 for means near 0. (A wrong label moves the means by > 1e-3, above.)
    np.testing.assert_allclose(vae.decode(z, 3).mean(), vae.decode(z, tf.fill([6], 3)).mean(), rtol=1e-5, atol=1e-7)
    draws = tf.random.stateless_normal([5, 6, 2], [3, 3])  # [k, b, latent] with labels [b]
    np.testing.assert_allclose(vae.decode(draws, labels).mean()[2], vae.decode(draws[2], labels).mean(), rtol=1e-5,
                               atol=1e-7)
    # `given` fixes the labels behind the unconditional interface the objectives take.
    seed = tf.constant([4, 5])
    given = objectives.negative_elbo(vae.given(labels), images, seed=seed)
    posterior = vae.encode(images, labels)
    by_hand = -vae.decode(model.draw_latents(posterior, seed=seed), labels).log_prob(images) + \
        objectives.rate(posterior, vae.prior, None)
    np.testing.assert_allclose(given.loss, by_hand, rtol=1e-5)
    assert vae.sample(4, labels=[0, 1, 2, 3], seed=seed).shape == [4, *IMAGE_SHAPE]


def test_labels_outside_the_classes_and_a_batch_without_labels_are_refused():
    vae = built()
    images, _ = bars(2, 0)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\); got 7"):
        vae.encode(images, [0, 7])
    with pytest.raises(ValueError, match="scores images with their label"):
        protocol.scorer(vae, tf.constant(images))
    plain = built(conditional=False)
    assert protocol.scorer(plain, (images, [0, 1]))[0] is plain  # an unconditional model ignores labels


def fit(run_dir, conditional: bool, **changes):
    train_images, train_labels = bars(512, 1)
    test_images, test_labels = bars(128, 2)
    experiment_ = experiment(**{"model.conditional": conditional, **changes})
    return train.fit(experiment_, run_dir, progress=False,
                     train_data=data.from_arrays(train_images, train_labels, batch_size=32, shuffle=True),
                     test_data=data.from_arrays(test_images, test_labels, batch_size=64))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvae")
    return {kind: fit(root / kind, kind == "conditional") for kind in ("conditional", "plain")}


def test_the_conditional_vae_uses_the_labels_it_trains_on(trained):
    # log p(x|y) <= log p(x) + log C in expectation, and here the class says exactly where the vertical
    # bar is (2 bits = 1.39 nats of a 4-class uniform label, and its pixels), so the conditional model's
    # test -ELBO must be clearly lower than the unconditional one's after the same 64 steps.
    conditional, plain = (trained[kind].history["test_loss"].dropna().iloc[-1] for kind in ("conditional", "plain"))
    assert conditional < plain - 2.0, (conditional, plain)
    # And drawing class y puts the vertical bar in column 2y + 1: the brightest column of each row of
    # the class-conditional samples is the class's.
    vae = trained["conditional"].model
    grid = np.stack([vae.sample(16, labels=y, seed=tf.constant([0, y])).numpy() for y in range(CLASSES)])
    brightest = grid.mean(axis=(1, 2, 4)).argmax(axis=-1)  # [class]: the column with the most ink
    np.testing.assert_array_equal(brightest, 2 * np.arange(CLASSES) + 1)


def test_evaluate_scores_each_image_given_its_label_and_importance_sampling_tightens_the_bound(trained):
    vae = trained["conditional"].model
    test_images, test_labels = bars(128, 2)
    numbers = evaluation.evaluate(vae, data.from_arrays(test_images, test_labels, batch_size=64), k=50)
    elbo = evaluation.average_terms(vae, (test_images, test_labels), seed=0, batch_size=64)
    assert abs(numbers["negative_elbo"] - float(elbo.loss)) < 0.5  # the same bound, other draws of z
    assert numbers["nll"] < numbers["negative_elbo"]  # log p(x|y) >= the ELBO (k = 50)
    with pytest.raises(ValueError, match="scores images with their labels"):
        evaluation.evaluate(vae, test_images, k=2)


def test_a_conditional_vae_trains_from_a_tf_data_pipeline_of_images_and_labels(tmp_path):
    images, labels = bars(96, 3)
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    result = train.fit(experiment(**{"model.conditional": True, "train.epochs": 1}), tmp_path / "run",
                       train_data=pipeline, test_data=pipeline, progress=False)
    assert result.history["step"].iloc[-1] == 3 and np.isfinite(result.history["test_loss"].iloc[-1])


@pytest.mark.parametrize("train_data, words", [
    (lambda: data.from_arrays(bars(64, 0)[0], batch_size=32), "model.conditional=true needs labels"),
    (lambda: data.from_arrays(bars(64, 0)[0], np.full(64, 4), batch_size=32), "model.num_classes is 4, but"),
    (lambda: tf.data.Dataset.from_tensor_slices(bars(64, 0)[0]).batch(32), "model.conditional=true needs labels"),
])
def test_data_that_a_conditional_vae_cannot_use_ends_in_one_line_naming_the_field(train_data, words, tmp_path):
    test = data.from_arrays(*bars(64, 1), batch_size=32)
    with pytest.raises(ValueError, match=words):
        train.fit(experiment(**{"model.conditional": True}), tmp_path / "run", train_data=train_data(),
                  test_data=test, progress=False)


@pytest.mark.parametrize("changes, words", [
    ({"model.conditional": True, "model.architecture": "two_layer"}, "model.conditional=true needs a one-layer"),
    ({"model.num_classes": 0}, "model.num_classes must be a positive integer"),
    ({"model.conditional": "yes"}, "model.conditional must be true or false"),
])
def test_conditional_options_that_do_not_fit_are_refused(changes, words):
    with pytest.raises(config.ConfigError, match=words):
        config.override(config.preset("tiny"), changes)


def test_the_class_sample_grid_has_a_row_per_class_sharing_each_columns_z():
    vae = built()
    grid = grids.class_sample_grid(vae, [0, 1, 2], cols=5, seed=3)
    assert grid.shape == (3 * 9 - 1, 5 * 9 - 1, 1)
    codes = vae.prior.sample(5, seed=tf.constant([3, 0]))
    # The grid decodes 15 codes at once, the reference 5: another batch shape, maybe another summation order
    # (see test_labels_reach_the_encoder_and_the_decoder...): rtol 1e-5, atol 1e-7.
    np.testing.assert_allclose(grid[9:17, 9:17], vae.decode(codes, 1).mean()[1], rtol=1e-5, atol=1e-7)  # row 1, col 1


@pytest.mark.slow  # 11 s of CLI pipeline (make test under 5 minutes); the conditional's Python tests stay
def test_a_conditional_run_trains_evaluates_draws_and_exports_from_the_command_line(mnist_data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--preset", "tiny", "--data-dir", mnist_data_dir, "--run-dir", str(run_dir),
                     "--no-progress", "--set", "model.conditional=true"]) == 0
    assert list((run_dir / "tensorboard" / "test").iterdir())  # reconstructions given labels, samples of classes
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"class_samples.png", "reconstructions.png", "latent_grid.png", "kl_per_dimension.png"} <= figures
    assert not {"prior_samples.png", "interpolation.png", "anomaly_scores.png"} & figures
    err = capsys.readouterr().err
    assert "tfvae: warning: interpolation: not drawn for a conditional VAE" in err
    assert cli.main(["evaluate", str(run_dir), "--k", "20", "--limit", "10", "--no-progress"]) == 0
    numbers = json.loads((run_dir / "eval.json").read_text())
    assert np.isfinite(numbers["nll"]) and numbers["nll"] < numbers["negative_elbo"] + 1.0
    assert cli.main(["export", str(run_dir), str(tmp_path / "export")]) == 0
    exported = tf.saved_model.load(str(tmp_path / "export"))
    images, labels = tf.zeros([2, 28, 28, 1]), tf.constant([3, 5], tf.int64)
    restored = rundir.open_run(run_dir).model
    np.testing.assert_allclose(exported.decode(tf.ones([2, 2]), labels)["mean"],
                               restored.decode(tf.ones([2, 2]), labels).mean(), rtol=1e-5)
    assert exported.sample(2, [1, 2], labels)["images"].shape == [2, 28, 28, 1]
    assert exported.elbo(images, [1, 2], labels)["negative_elbo"].shape == [2]


def test_one_hot_and_label_checks():
    np.testing.assert_array_equal(conditioning.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    conditioning.check_labels([0, 3], 4)
    with pytest.raises(ValueError, match="got -1"):
        conditioning.check_labels([-1], 4)
    plain = built(conditional=False)
    for wrap in (lambda n: conditioning.LabelledEncoder(plain.encoder, n, IMAGE_SHAPE),
                 lambda n: conditioning.LabelledDecoder(plain.decoder, n),
                 lambda n: model.ConditionalVAE(plain.encoder, plain.decoder, n)):
        for bad in (0, 3.5, 3.0, "3", None):
            with pytest.raises(ValueError, match=f"num_classes must be a positive integer, got {bad!r}"):
                wrap(bad)
        assert wrap(np.int64(3)).num_classes == 3

"""Side data (tfvae.protocol): what travels with an image besides its pixels reaches the model that asks for it,
by name, through fit's runners and evaluation; a model that asks for none never sees it; and the class-conditional
model is one such model, not a branch in the modules that carry batches."""

import io
import tokenize
from pathlib import Path

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae
from tfvae import data, protocol
from test_protocol import PlainModel
from test_train import IMAGE_SHAPE, datasets, tiny_experiment

tfd = tfp.distributions
PACKAGE = Path(tfvae.__file__).parent


class ShiftedModel(PlainModel):
    """PlainModel whose decoder's logits are shifted by a learned multiple of each image's side data "shift"
    [b]: a model that needs side data of another name than "label". Records the side data it is given."""

    side_data = ("shift",)

    def __init__(self):
        super().__init__()
        self.weight = tf.Variable(0.0, name="shift_weight")
        self.seen: list[np.ndarray] = []

    def given(self, side):
        if tf.executing_eagerly():
            self.seen.append(np.asarray(side["shift"]))
        return Shifted(self, tf.cast(side["shift"], tf.float32))


class Shifted:
    """ShiftedModel with one batch's shifts [b] fixed: the four parts of the protocol."""

    def __init__(self, model: ShiftedModel, shift: tf.Tensor):
        self.model, self.shift, self.latent_size = model, shift, model.latent_size

    @property
    def prior(self):
        return self.model.prior

    def encode(self, images):
        return self.model.encode(images)

    def decode(self, z):
        likelihood = self.model.decode(z)
        logits = likelihood.distribution.logits + self.model.weight * self.shift[:, None, None, None]
        return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)


def sources(experiment, **side_data):
    """The tiny experiment's training and test images as ArraySources carrying `side_data` ({name: per-image
    arrays}, each a function of the number of images)."""
    return [source.adding_side_data({name: make(len(source.images)) for name, make in side_data.items()})
            for source in datasets(experiment)]


def fit(run_dir, model, train_data, test_data, epochs=2):
    experiment = tfvae.override(tiny_experiment(epochs), {"train.learning_rate": 1e-2, "train.deterministic": True})
    return tfvae.fit(experiment, run_dir, model=model, train_data=train_data, test_data=test_data, progress=False)


def test_side_data_of_any_name_reaches_the_model_that_needs_it_batch_by_batch(tmp_path):
    experiment = tiny_experiment(2)
    train_data, test_data = sources(experiment, shift=lambda n: np.arange(n) % 3)
    assert "shift" in train_data.side_data
    images, side = next(iter(test_data))
    np.testing.assert_array_equal(side["shift"], np.arange(len(images)) % 3)
    result = fit(tmp_path / "run", ShiftedModel, train_data, test_data)
    assert np.isfinite(result.history["test_loss"].iloc[-1])
    assert result.model.weight.numpy() != 0.0  # the shift reached the loss: its weight got gradients
    # evaluate's compiled loop gives each batch its own shifts: other shifts, other likelihoods
    zeroed = test_data.adding_side_data({"shift": np.zeros(len(test_data.images))})
    scores = [np.asarray(tfvae.evaluate(result.model, source, k=2, per_example=True)["log_px"])
              for source in (test_data, zeroed)]
    shifted = np.arange(len(test_data.images)) % 3 != 0
    assert np.all(np.abs(np.subtract(*scores))[shifted] > 1e-3) and np.allclose(*(s[~shifted] for s in scores))


def test_a_model_that_needs_side_data_the_data_lacks_is_refused_in_one_line(tmp_path):
    train_data, test_data = sources(tiny_experiment(1))  # labels only
    with pytest.raises(ValueError, match=r"^this model needs the shift of each image, and the train data has none"):
        fit(tmp_path / "run", ShiftedModel, train_data, test_data)
    with pytest.raises(ValueError, match=r"scores images with their shifts: give batches \(images, \{'shift'"):
        protocol.scorer(ShiftedModel(), (tf.zeros([2, *IMAGE_SHAPE]), {"label": tf.zeros([2], tf.int64)}))


def test_side_data_a_model_does_not_need_changes_nothing_in_its_run(tmp_path):
    experiment = tiny_experiment(2)
    plain = fit(tmp_path / "plain", PlainModel, *datasets(experiment))
    carried = fit(tmp_path / "carried", PlainModel, *sources(experiment, shift=lambda n: np.ones(n)))
    columns = ["step", "train_loss", "test_loss"]
    np.testing.assert_array_equal(plain.history[columns].to_numpy(), carried.history[columns].to_numpy())
    assert not isinstance(next(iter(sources(experiment, shift=np.ones)[0].keeping_side_data(()))), tuple)


def test_bad_side_data_is_refused_naming_it():
    images = np.zeros([4, *IMAGE_SHAPE], np.float32)
    with pytest.raises(ValueError, match=r"side_data\['shift'\] must be numbers \[N, ...\] with N = 4"):
        data.from_arrays(images, batch_size=2, side_data={"shift": np.zeros(3)})
    with pytest.raises(ValueError, match='side_data may not name "label"'):
        data.from_arrays(images, batch_size=2, side_data={"label": np.zeros(4)})


def _names_in_code(path: Path) -> set[str]:
    """The conditional model's names a module's code uses (not its comments or docstrings): `conditional`,
    `given`, `split_batch` as names, and `num_classes` read from something called model."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)]
    found = {t.string for t in tokens if t.type == tokenize.NAME and t.string in ("conditional", "given", "split_batch")}
    for before, dot, name in zip(tokens, tokens[1:], tokens[2:]):
        if before.string == "model" and dot.string == "." and name.string == "num_classes":
            found.add("model.num_classes")
    return found


def test_the_conditional_model_is_named_in_at_most_four_modules_besides_its_own():
    naming = {str(path.relative_to(PACKAGE)): sorted(names) for path in sorted(PACKAGE.rglob("*.py"))
              if path.name not in ("conditioning.py", "model.py") and (names := _names_in_code(path))}
    assert len(naming) <= 4, naming

"""TensorBoard: a fit with the hook leaves event files holding the history's scalars and the images."""

import collections
import time

import numpy as np
import pytest
import tensorflow as tf
from test_train import datasets, prototype_images, tiny_experiment

from tfvae import tensorboard, train


def read_events(folder) -> dict:
    """tag -> {step: value}: floats for scalars, the list of PNG strings for images."""
    found = collections.defaultdict(dict)
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                plugin = value.metadata.plugin_data.plugin_name
                found[value.tag][event.step] = list(array[2:]) if plugin == "images" else float(array)
    return found


class Timed:
    """Wraps a hook and adds up the seconds spent in it."""

    def __init__(self, hook):
        self.hook, self.seconds, self.calls = hook, 0.0, 0

    def __call__(self, *args):
        started = time.perf_counter()
        self.hook(*args)
        self.seconds += time.perf_counter() - started
        self.calls += 1


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tensorboard") / "run"
    experiment = tiny_experiment(epochs=2)
    train_data, test_data = datasets(experiment)
    logger = tensorboard.TensorBoardLogger(
        tensorboard.log_dir(run_dir), prototype_images(3, seed=4), learning_rate=experiment.train.learning_rate,
        num_samples=5,
    )
    timed = Timed(logger)
    result = train.fit(experiment, run_dir, train_data=train_data, test_data=test_data, hooks=[timed], progress=False)
    logger.close()
    return result, timed


def test_train_events_hold_every_history_row(logged_run):
    result, _ = logged_run
    events = read_events(tensorboard.log_dir(result.run_dir) / "train")
    history = result.history.set_index("step")
    for term in ("loss", "distortion", "rate"):
        assert sorted(events[term]) == history.index.tolist()
        # The same float32 number, in the event and in history.csv (float64 text): equal to float32's 6e-8.
        np.testing.assert_allclose(list(events[term].values()), history[f"train_{term}"].to_numpy(), rtol=1e-6)
    assert set(events["kl_weight"].values()) == {1.0}
    np.testing.assert_allclose(list(events["learning_rate"].values()), 1e-3, rtol=1e-6)
    assert sorted(events["learning_rate"]) == history.index.tolist()


def test_test_events_hold_the_evaluations_and_images(logged_run):
    result, _ = logged_run
    events = read_events(tensorboard.log_dir(result.run_dir) / "test")
    evaluated = result.history.dropna(subset=["test_loss"]).set_index("step")
    assert sorted(evaluated.index) == [5, 10]  # 40 images, batch 8: epoch ends
    for term in ("loss", "distortion", "rate"):
        assert sorted(events[term]) == evaluated.index.tolist()
        np.testing.assert_allclose(list(events[term].values()), evaluated[f"test_{term}"].to_numpy(), rtol=1e-6)
    for tag, count, width in (("reconstructions", 3, 16), ("samples", 5, 8)):
        assert sorted(events[tag]) == [5, 10], tag
        pngs = events[tag][10]
        assert len(pngs) == count, tag
        picture = tf.io.decode_png(pngs[0]).numpy()
        assert picture.shape == (8, width, 1), tag
    # Original beside reconstruction: the left half is the input image, in 0..255.
    left = tf.io.decode_png(events["reconstructions"][10][0]).numpy()[:, :8, 0]
    np.testing.assert_array_equal(left, np.round(prototype_images(3, seed=4)[0, :, :, 0] * 255))


def test_hook_costs_little_next_to_training(logged_run):
    result, timed = logged_run
    # Measured for the 784-400-20 model on 2 busy cores: 3 ms a row, 0.1-0.5 s an evaluation row.
    assert timed.calls == len(result.history)
    assert timed.seconds / timed.calls < 0.5, f"{timed.seconds / timed.calls:.3f} s per hook call"

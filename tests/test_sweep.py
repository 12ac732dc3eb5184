"""Sweeps and their pieces: ROC AUC against hand-computed values, the sweep table, the rate-distortion chart,
and the optimizer choice."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfvae import config, evaluation, model, optimizers, plots, rundir, sweep, train
from tfvae import step as step_lib

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed trapz


# --------------------------------------------------------------------------- ROC AUC
def test_roc_auc_matches_a_hand_count_of_pairs():
    # Pairs (normal, anomalous) with anomalous > normal: 3 vs {1, 2, 3}: 2 wins + 1 tie; 5 vs all: 3 wins;
    # 0 vs all: none. (2 + 0.5 + 3 + 0) / 9.
    assert evaluation.roc_auc([1, 2, 3], [3, 5, 0]) == pytest.approx(5.5 / 9)
    assert evaluation.roc_auc([0, 1], [2, 3]) == 1.0
    assert evaluation.roc_auc([2, 3], [0, 1]) == 0.0
    assert evaluation.roc_auc([1, 1], [1]) == 0.5


def test_roc_auc_equals_the_area_under_the_traced_curve():
    rng = np.random.default_rng(0)
    normal, anomalous = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    thresholds = np.sort(np.concatenate([normal, anomalous, [np.inf]]))[::-1]
    tpr = [(anomalous >= t).mean() for t in thresholds]
    fpr = [(normal >= t).mean() for t in thresholds]
    assert evaluation.roc_auc(normal, anomalous) == pytest.approx(trapezoid(tpr, fpr), abs=1e-12)


def test_roc_auc_refuses_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="at least one"):
        evaluation.roc_auc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        evaluation.roc_auc([np.nan], [1.0])


# --------------------------------------------------------------------------- sweep table and chart
@pytest.fixture(scope="module")
def two_runs(mnist_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    base = config.override(config.preset("tiny"), {"data.data_dir": mnist_data_dir})
    runs = {}
    for beta in (0.5, 2.0):
        runs[beta] = root / f"beta-{beta:g}"
        train.fit(config.override(base, {"train.beta": beta}), runs[beta], progress=False)
    return runs


def test_sweep_table_has_a_row_per_run_with_its_final_terms(two_runs):
    table = sweep.sweep_table(two_runs, "beta", k=4, limit=16)
    assert list(table.columns) == ["beta", *sweep.SWEEP_COLUMNS] and list(table["beta"]) == [0.5, 2.0]
    for row in table.itertuples():
        last = rundir.read_history(row.run_dir).dropna(subset=["test_loss"]).iloc[-1]
        assert row.test_rate == pytest.approx(last["test_rate"]) and row.k == 4
        assert row.negative_elbo == pytest.approx(last["test_distortion"] + last["test_rate"])
        assert np.isfinite(row.log_px) and row.log_px < 0
    assert table["test_rate"].iloc[0] > table["test_rate"].iloc[1]  # a smaller beta spends more nats on the code


def test_rate_distortion_chart_draws_one_point_per_setting(tmp_path):
    table = pd.DataFrame(
        {"latent": [20, 2, 5], "test_rate": [25.0, 6.0, 15.0], "test_distortion": [63.0, 135.0, 90.0]}
    )
    chart = plots.rate_distortion_chart(table, "latent")
    assert list(chart.data["latent"]) == [2, 5, 20] and list(chart.data["label"])[0] == "latent = 2"
    chart.save(tmp_path / "rd.png", dpi=50, verbose=False)
    assert (tmp_path / "rd.png").stat().st_size > 1000


# --------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_each_optimizer_is_built_with_its_state_and_leaves_weights_alone(name):
    tf.random.set_seed(0)
    vae = model.build(config.ModelConfig(hidden_sizes=(8,), latent_size=2), (4, 4, 1))
    vae(tf.zeros([1, 4, 4, 1]))
    before = [v.numpy().copy() for v in vae.trainable_variables]
    optimizer = optimizers.build_optimizer(vae, 0.1, name, momentum=0.5)
    for value, old in zip(vae.trainable_variables, before):
        np.testing.assert_array_equal(value.numpy(), old)
    images = tf.cast(tf.random.uniform([3, 4, 4, 1]) < 0.5, tf.float32)
    settings = config.TrainConfig(optimizer=name)
    step_lib.checked_step(vae, optimizer, step_lib.LoopState(), images, tf.constant([0, 1]),
                          step_lib.training_loss(settings), settings)
    assert any(not np.array_equal(v.numpy(), old) for v, old in zip(vae.trainable_variables, before))


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="train.optimizer must be one of adam, sgd, momentum; got 'rmsprop'"):
        config.override(config.preset("tiny"), {"train.optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="momentum must be a number in"):
        config.override(config.preset("tiny"), {"train.momentum": 1.0})


def optimizer_slots(run_dir) -> list[str]:
    """The names of the optimizer's per-weight variables in a run's latest checkpoint (no learning rate, no step)."""
    reader = tf.train.load_checkpoint(str(tf.train.latest_checkpoint(run_dir / "checkpoints")))
    return [name for name in reader.get_variable_to_shape_map()
            if name.startswith("optimizer/") and "learning_rate" not in name and "/step/" not in name]


@pytest.mark.parametrize("name, slots_per_weight", [("sgd", 0), ("momentum", 1)])
def test_sgd_and_momentum_runs_train_through_fit_with_their_own_state(mnist_data_dir, tmp_path, name,
                                                                       slots_per_weight):
    experiment = config.override(config.preset("tiny"), {"data.data_dir": mnist_data_dir, "train.optimizer": name})
    result = train.fit(experiment, tmp_path / "run", progress=False)
    history = result.history
    assert np.isfinite(history["test_loss"].iloc[-1])
    assert rundir.load_experiment(tmp_path / "run").train.optimizer == name
    # Plain SGD keeps no state per weight; momentum keeps an accumulator per weight (Adam would keep two).
    assert len(optimizer_slots(tmp_path / "run")) == slots_per_weight * len(result.model.trainable_variables)
    assert train.fit(experiment, tmp_path / "run", progress=False).history["step"].iloc[-1] == history["step"].iloc[-1]

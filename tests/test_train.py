"""Training: the step lowers the loss, checkpoints round-trip, and fit resumes exactly."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import sonnet as snt
import tensorflow as tf

from tfvae import config, data, evaluation, model, objectives, optimizers, rundir, runners, train
from tfvae import step as step_lib

IMAGE_SHAPE = (8, 8, 1)


def prototype_images(n: int, seed: int = 0) -> np.ndarray:
    """n binary 8x8 images, noisy copies of 4 prototypes: [n, 8, 8, 1] float32."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((4, *IMAGE_SHAPE)) < 0.4
    flips = rng.random((n, *IMAGE_SHAPE)) < 0.05
    return np.logical_xor(prototypes[rng.integers(0, 4, n)], flips).astype(np.float32)


def tiny_experiment(epochs: int = 3) -> config.Experiment:
    return config.override(
        config.preset("tiny"),
        {"model.hidden_sizes": [16], "data.batch_size": 8, "train.epochs": epochs, "train.log_every": 2},
    )


def datasets(experiment):
    tf.random.set_seed(experiment.train.seed)  # tf.data seeds combine with the global seed, as fit's do
    train_data = data.from_arrays(
        prototype_images(40), batch_size=experiment.data.batch_size, shuffle=True, seed=1, prefetch=False
    )
    test_data = data.from_arrays(prototype_images(16, seed=9), batch_size=experiment.data.batch_size)
    return train_data, test_data


def built(seed: int = 0):
    tf.random.set_seed(seed)
    vae = model.build(config.ModelConfig(hidden_sizes=(32,), latent_size=2), IMAGE_SHAPE)
    vae(tf.zeros([1, *IMAGE_SHAPE]))
    return vae, optimizers.build_optimizer(vae, 1e-2)


def test_loss_falls_over_a_few_hundred_steps_on_a_small_batch():
    vae, optimizer = built()
    batch = tf.constant(prototype_images(32))
    state = step_lib.LoopState()
    runner = runners.IteratorRunner(vae, optimizer, config.TrainConfig(), state, tf.data.Dataset.from_tensors(batch))
    runner.run(10)
    first = state.take_interval_means()
    runner.run(280)
    state.take_interval_means()
    runner.run(10)
    last = state.take_interval_means()
    # A binary 8x8 image costs 64 * log 2 = 44.4 nats at chance; 4 prototypes need ~2 nats of code.
    assert first.loss > 35 and last.loss < 0.5 * first.loss
    assert optimizer.step.numpy() == 300 and state.step.numpy() == 300


def test_the_learning_rate_schedule_sets_the_size_of_adams_step():
    # Adam's first update is lr * g / (|g| + eps), so each weight moves by the
    # learning rate in effect: 1e-3 * 0.1 ** (10 / 10) = 1e-4 at step 10.
    vae, optimizer = built()
    settings = config.TrainConfig(learning_rate=1e-3, lr_schedule="exponential", lr_decay_rate=0.1, lr_decay_steps=10)
    state = step_lib.LoopState()
    state.step.assign(10)
    before = [v.numpy() for v in vae.trainable_variables]
    runners.IteratorRunner(vae, optimizer, settings, state, tf.data.Dataset.from_tensors(prototype_images(16))).run(1)
    largest_move = max(np.abs(v.numpy() - b).max() for v, b in zip(vae.trainable_variables, before))
    np.testing.assert_allclose(largest_move, 1e-4, rtol=1e-3)
    np.testing.assert_allclose(float(step_lib.learning_rate(settings, 25)), 1e-3 * 0.1**2.5, rtol=1e-5)
    assert float(step_lib.learning_rate(config.TrainConfig(learning_rate=3e-4), 10**6)) == pytest.approx(3e-4)


def test_optimizer_slots_exist_before_training_and_weights_are_untouched():
    vae, optimizer = built()
    fresh, _ = built()
    assert len(optimizer.m) == len(vae.trainable_variables) and optimizer.step.numpy() == 0
    for a, b in zip(vae.trainable_variables, fresh.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpoint_round_trip_restores_weights_and_optimizer_state(tmp_path):
    vae, optimizer = built(seed=1)
    images = tf.data.Dataset.from_tensors(prototype_images(16))
    runners.IteratorRunner(vae, optimizer, config.TrainConfig(), step_lib.LoopState(), images).run(5)
    path = tf.train.Checkpoint(model=vae, optimizer=optimizer).save(str(tmp_path / "ckpt"))

    restored, restored_optimizer = built(seed=2)  # different initial weights
    tf.train.Checkpoint(model=restored, optimizer=restored_optimizer).restore(path).assert_consumed()
    assert restored_optimizer.step.numpy() == 5
    saved_state = vae.variables + tuple(optimizer.m) + tuple(optimizer.v)
    restored_state = restored.variables + tuple(restored_optimizer.m) + tuple(restored_optimizer.v)
    assert len(saved_state) == len(restored_state) == 3 * len(vae.variables)
    for a, b in zip(saved_state, restored_state):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class Interrupt(Exception):
    pass


def interrupt_at(step_to_stop: int):
    def hook(step, model, row):
        if step >= step_to_stop:
            raise Interrupt

    return hook


def test_interrupted_fit_resumes_from_its_checkpoint_to_the_same_result(tmp_path):
    experiment = tiny_experiment(epochs=3)  # 5 steps per epoch, rows every 2 steps and at epoch ends
    whole = train.fit(experiment, tmp_path / "whole", train_data=datasets(experiment)[0],
                      test_data=datasets(experiment)[1], progress=False)

    with pytest.raises(Interrupt):  # dies in the middle of the second epoch
        train.fit(experiment, tmp_path / "split", train_data=datasets(experiment)[0],
                  test_data=datasets(experiment)[1], hooks=[interrupt_at(8)], progress=False)
    assert tf.train.latest_checkpoint(tmp_path / "split" / "checkpoints").endswith("ckpt-5")
    assert rundir.read_history(tmp_path / "split")["step"].max() == 5
    resumed = train.fit(experiment, tmp_path / "split", train_data=datasets(experiment)[0],
                        test_data=datasets(experiment)[1], progress=False)

    steps = resumed.history["step"].tolist()
    assert steps == whole.history["step"].tolist() == [2, 4, 5, 6, 8, 10, 12, 14, 15]
    on_disk = pd.read_csv(tmp_path / "split" / "history.csv")
    assert on_disk["step"].is_unique and on_disk["step"].tolist() == steps
    for a, b in zip(whole.model.variables, resumed.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(whole.history["test_loss"].dropna(), resumed.history["test_loss"].dropna())


def test_history_columns_and_units(tmp_path):
    experiment = tiny_experiment(epochs=1)
    result = train.fit(experiment, tmp_path / "run", train_data=datasets(experiment)[0],
                       test_data=datasets(experiment)[1], progress=False)
    history = rundir.read_history(tmp_path / "run")
    required = ["step", "epoch", "train_loss", "train_distortion", "train_rate",
                "test_loss", "test_distortion", "test_rate", "wall_time"]
    assert set(required) <= set(history.columns)
    last = history.iloc[-1]
    assert last["epoch"] == 1.0 and last["step"] == 5
    np.testing.assert_allclose(last["test_loss"], last["test_distortion"] + last["test_rate"], rtol=1e-5)
    assert 0 < last["test_loss"] < 64 * np.log(2) * 1.5  # nats per 8x8 image, not per pixel or per batch
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == experiment.to_dict()
    assert result.history["step"].tolist() == history["step"].tolist()
    # The test ELBO of the last row is that of the final model over the whole test set (held in memory
    # by fit, as its batches are the same every pass), with the draws seeded by train.seed.
    test_terms = evaluation.average_terms(result.model, datasets(experiment)[1], seed=experiment.train.seed)
    np.testing.assert_allclose(last["test_loss"], test_terms.loss.numpy(), rtol=1e-5)


def test_run_dir_with_other_settings_is_refused_naming_the_fields(tmp_path):
    experiment = tiny_experiment(epochs=1)
    rundir.prepare(tmp_path / "run", experiment)
    other = config.override(experiment, {"train.beta": 0.5, "model.latent_size": 3})
    with pytest.raises(rundir.RunDirError, match=r"model.latent_size: 2 in the run, 3 now; train.beta: 1.0 in the run, 0.5 now"):
        rundir.prepare(tmp_path / "run", other)
    rundir.prepare(tmp_path / "run", config.override(experiment, {"train.epochs": 4}))  # extending is fine


def test_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(rundir.RunDirError, match="is not a directory"):
        rundir.prepare(tmp_path / "run", tiny_experiment())


def array_runner_run(step_counts, settings, images):
    """Weights after running the in-memory runner in calls of `step_counts` steps (from fresh weights)."""
    vae, optimizer = built(seed=3)
    source = data.from_arrays(images, batch_size=8, binarize="dynamic", shuffle=True, seed=4)
    state = step_lib.LoopState()
    runner = runners.ArrayRunner(vae, optimizer, settings, state, source)
    for count in step_counts:
        runner.run(count)
    return vae, state, source


@pytest.mark.parametrize("jit_compile", [True, False])
def test_array_runner_equals_one_step_at_a_time_on_the_same_batches(jit_compile):
    settings = config.TrainConfig(learning_rate=1e-2, jit_compile=jit_compile)
    images = prototype_images(36)  # 5 batches of 8 a pass, the last of 4
    looped, state, source = array_runner_run([5, 3, 2], settings, images)
    assert int(state.step.numpy()) == 10

    vae, optimizer = built(seed=3)
    stepwise_state = step_lib.LoopState()

    # Compiled as the runner is (XLA's stateless random numbers are not TensorFlow's kernels'):
    # full batches with train.jit_compile, the smaller last batch of a pass as a graph.
    def step_fn(pixels, pass_seed, k, z_seed):
        batch = source.preprocess(pixels, pass_seed, k)
        return step_lib.checked_step(vae, optimizer, stepwise_state, batch, z_seed, step_lib.training_loss(settings), settings)

    full_step, last_step = tf.function(step_fn, jit_compile=jit_compile), tf.function(step_fn, jit_compile=False)

    for epoch in range(2):
        seed = runners.pass_seed(source.seed, epoch)
        order = source.indices(seed, 0, 36).numpy()
        assert sorted(order) == list(range(36))  # each image once a pass
        for k in range(5):
            pixels = tf.gather(source.pixels, order[8 * k : 8 * (k + 1)])
            z_seed = tf.cast(tf.stack([settings.seed, int(stepwise_state.step.numpy())]), tf.int32)
            (last_step if k == 4 else full_step)(pixels, seed, tf.constant(k, tf.int64), z_seed)
    for a, b in zip(looped.variables, vae.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.sums.numpy(), stepwise_state.sums.numpy(), rtol=1e-4)
    assert not np.allclose(looped.variables[0].numpy(), built(seed=3)[0].variables[0].numpy())  # it trained


def test_array_runner_result_does_not_depend_on_how_steps_are_split_into_calls():
    settings = config.TrainConfig(learning_rate=1e-2)
    images = prototype_images(36)
    whole, _, _ = array_runner_run([5, 5, 5], settings, images)
    split, _, _ = array_runner_run([2, 3, 1, 1, 3, 4, 1], settings, images)
    for a, b in zip(whole.variables, split.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_array_runner_refuses_to_cross_a_pass_boundary():
    with pytest.raises(ValueError, match="would cross the end of pass 0"):
        array_runner_run([3, 3], config.TrainConfig(), prototype_images(36))


def test_fit_uses_the_array_runner_for_in_memory_data_and_the_iterator_runner_otherwise():
    experiment = tiny_experiment()
    train_data, _ = datasets(experiment)
    vae, optimizer = built()
    state = step_lib.LoopState()
    assert runners.make_runner(vae, optimizer, experiment.train, state, train_data).checkpointables == {}
    mapped = runners.make_runner(vae, optimizer, experiment.train, state, train_data.as_dataset().map(lambda x: x))
    assert set(mapped.checkpointables) == {"rng", "iterator"}


def test_tfvae_adam_makes_the_same_updates_as_sonnets_adam():
    from tfvae import optimizers

    rng = np.random.default_rng(0)
    start = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    ours = [tf.Variable(value) for value in start]
    sonnets = [tf.Variable(value) for value in start]
    fast, reference = optimizers.FoldedAdam(0.01), snt.optimizers.Adam(0.01)
    for step in range(50):  # gradients of very different sizes, so epsilon and the bias corrections matter
        gradients = [tf.constant(rng.normal(size=v.shape) * 10.0 ** rng.integers(-6, 3), tf.float32) for v in ours]
        fast.apply(gradients, ours)
        reference.apply(gradients, sonnets)
    for a, b in zip(ours, sonnets):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(a.numpy(), start[0] if a.shape == (5, 3) else start[1])  # it moved
    for a, b in zip(fast.m + fast.v, reference.m + reference.v):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-12)
    assert int(fast.step.numpy()) == 50


def test_a_time_budget_stops_at_the_first_row_past_it_with_a_checkpoint_and_a_larger_one_continues(
        tmp_path, monkeypatch, capsys):
    ticks = iter(range(1000))  # a clock that advances 1 s each time fit reads it: once a session, once a row
    monkeypatch.setattr(train, "_clock", lambda: float(next(ticks)))
    experiment = tiny_experiment(epochs=3)  # 5 steps per epoch, rows every 2 steps and at epoch ends
    run = lambda budget: train.fit(experiment, tmp_path / "run", train_data=datasets(experiment)[0],  # noqa: E731
                                   test_data=datasets(experiment)[1], progress=False, time_budget=budget)

    first = run(3)
    assert first.history["step"].tolist() == [2, 4, 5] and first.history["wall_time"].tolist() == [1, 2, 3]
    assert tf.train.latest_checkpoint(tmp_path / "run" / "checkpoints").endswith("ckpt-5")
    second = run(4.5)  # continues from step 5 and 3 s: rows at 4 s and 5 s, the second one past 4.5
    assert second.history["step"].tolist() == [2, 4, 5, 6, 8]
    assert second.history["wall_time"].tolist() == [1, 2, 3, 4, 5]
    assert tf.train.latest_checkpoint(tmp_path / "run" / "checkpoints").endswith("ckpt-8")
    again = run(4.5)  # already past its budget: no step trained, nothing rewritten
    assert again.history["step"].tolist() == [2, 4, 5, 6, 8]
    assert rundir.read_history(tmp_path / "run")["step"].tolist() == [2, 4, 5, 6, 8]
    with pytest.raises(ValueError, match="time_budget"):
        run(0)
    capsys.readouterr()
    train.fit(experiment, tmp_path / "run", train_data=datasets(experiment)[0], test_data=datasets(experiment)[1],
              time_budget=6.5)  # the bar counts seconds of the budget from the 5 already trained: 5/7 to 7/7 at 7 s
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert "seconds of training" in bar[-1] and " 7/7 [" in bar[-1] and "epoch=2.40" in bar[-1]
    assert any(" 5/7 [" in line for line in bar)

    finished = run(None)  # the epochs bound it again, and it ends where an unbudgeted run ends
    whole = train.fit(experiment, tmp_path / "whole", train_data=datasets(experiment)[0],
                      test_data=datasets(experiment)[1], progress=False)
    assert finished.history["step"].tolist() == [2, 4, 5, 6, 8, 10, 12, 14, 15]
    for a, b in zip(whole.model.variables, finished.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_time_budget_holds_against_an_independent_wall_clock(tmp_path):
    """fit's real clock (no fake) against time.monotonic read outside fit, around the call and in a hook at every
    history row. Bounds, each argued so that a loaded machine cannot fail them:
    - fit counts no more than the call took (its seconds are the loop's, a part of the call's); 1 ms for the
      3 decimals history.csv keeps;
    - between the second and the last row of a session, fit's clock and the hook's readings measure the same span:
      each row's wall_time is read just before its hook runs, and what lies between the two (a test pass over 16
      images, a history row) is milliseconds, except at a session's first row, whose test pass traces the
      session's compiled test loop first; 0.5 s allows a stall of the machine in either;
    - it stops at the first row past the budget: the row before is under it, and the overrun is at most the
      longest interval between rows on fit's own clock (the budget is checked at rows);
    - a continued run adds the second session's seconds to the first's, and no more than that session took."""
    # A row an epoch; a graph, not XLA: the first row holds the compilation, which takes seconds either way.
    experiment = config.override(tiny_experiment(epochs=100_000), {"train.log_every": 5, "train.jit_compile": False})
    train_data, test_data = datasets(experiment)
    seen = []
    hook = lambda step, model, row: seen.append((time.monotonic(), row["wall_time"]))  # noqa: E731

    def session(budget):
        seen.clear()
        started = time.monotonic()
        result = train.fit(experiment, tmp_path / "run", train_data=train_data, test_data=test_data, hooks=[hook],
                           progress=False, time_budget=budget)
        return result.history["wall_time"].to_numpy(float), time.monotonic() - started, list(seen)

    earlier = 0.0
    for extra in (1e-3, 2.0, 1.0):  # one row (with the compilation), then 2 s more, then 1 s more: resumed twice
        budget = earlier + extra
        walls, took, rows = session(budget)
        new = walls[walls > earlier]
        # history.csv's wall_time is rounded to the millisecond: a row just past the budget may read 0.5 ms under it
        assert len(new) >= 1 and new[-1] >= budget - 5e-4 and (len(new) == 1 or new[-2] < budget + 5e-4)
        assert new[-1] - budget <= np.diff(walls, prepend=0.0).max()
        assert new[-1] - earlier <= took + 1e-3  # this session's seconds, no more than the call took
        if len(rows) >= 3:  # from the second row: the first's test pass traces its loop (0.6 s seen under load)
            (first_seen, first_wall), (last_seen, last_wall) = rows[1], rows[-1]
            assert abs((last_seen - first_seen) - (last_wall - first_wall)) < 0.5
        earlier = new[-1]
    assert len(walls) >= 3  # a row a session at least (more on a quiet machine; a loaded one may give one each)


def test_test_every_skips_test_passes_but_not_the_last_and_trains_the_same(tmp_path):
    """train.test_every = 2 over 5 epochs: test losses at epochs 2, 4 and 5 (the last) only, the same numbers
    there as testing every epoch, and the same weights: the test pass does not touch training."""
    results = {}
    for every in (1, 2):
        experiment = config.override(tiny_experiment(epochs=5), {"train.test_every": every})
        train_data, test_data = datasets(experiment)
        results[every] = train.fit(experiment, tmp_path / f"every{every}", train_data=train_data,
                                   test_data=test_data, progress=False)
    tested = {every: result.history.dropna(subset=["test_loss"]) for every, result in results.items()}
    assert tested[1]["epoch"].tolist() == [1, 2, 3, 4, 5] and tested[2]["epoch"].tolist() == [2, 4, 5]
    np.testing.assert_allclose(tested[2]["test_loss"], tested[1]["test_loss"].iloc[[1, 3, 4]], rtol=1e-6)
    for a, b in zip(results[1].model.variables, results[2].model.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    with pytest.raises(config.ConfigError, match="train.test_every must be a positive integer, got 0"):
        config.override(tiny_experiment(), {"train.test_every": 0})


def checkpoint_values(run_dir) -> dict:
    """Every tensor of a run's newest checkpoint, by its key (the save counter left out)."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    return {key: reader.get_tensor(key) for key, dtype in reader.get_variable_to_dtype_map().items()
            if "save_counter" not in key and dtype != tf.variant}  # (an iterator's state is a variant)


@pytest.mark.slow  # (14 s each; `make test-slow` runs both)
@pytest.mark.parametrize("in_memory", [True, False], ids=["array_runner", "iterator_runner"])
def test_an_interrupted_factor_vae_resumes_to_the_same_weights_discriminator_and_its_adam(tmp_path, in_memory):
    experiment = config.override(tiny_experiment(epochs=3), {
        "train.factor_weight": 5.0, "train.discriminator_hidden_sizes": [8, 8], "train.deterministic": True,
        "train.discriminator_learning_rate": 1e-2,
    })

    def run(run_dir, **options):
        train_data, test_data = datasets(experiment)
        train_data = train_data if in_memory else train_data.as_dataset()
        return train.fit(experiment, run_dir, train_data=train_data, test_data=test_data, progress=False, **options)

    whole = run(tmp_path / "whole")
    with pytest.raises(Interrupt):  # dies in the middle of the second epoch, after the checkpoint at step 5
        run(tmp_path / "split", hooks=[interrupt_at(8)])
    resumed = run(tmp_path / "split")

    expected, got = checkpoint_values(tmp_path / "whole"), checkpoint_values(tmp_path / "split")
    assert expected.keys() == got.keys()
    adversary_keys = [key for key in expected if key.startswith("adversary")]
    # The discriminator's 3 layers (w and b) and its Adam's step and 2 slots per weight.
    assert len([k for k in adversary_keys if k.startswith("adversary/")]) == 6
    assert len([k for k in adversary_keys if k.startswith("adversary_optimizer/")]) == 1 + 2 * 6 + 1
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    assert whole.history["train_loss"].tolist() == resumed.history["train_loss"].tolist()
    assert expected["adversary_optimizer/step/.ATTRIBUTES/VARIABLE_VALUE"] == 15  # updated at every step


def test_a_factor_vae_whose_last_batch_holds_one_image_is_refused_naming_the_field(tmp_path):
    experiment = config.override(tiny_experiment(), {"train.factor_weight": 5.0,
                                                     "train.discriminator_hidden_sizes": [8]})
    train_data = data.from_arrays(prototype_images(41), batch_size=8)
    with pytest.raises(ValueError, match=r"^data\.batch_size 8 leaves a last batch of one image") as error:
        train.fit(experiment, tmp_path / "run", train_data=train_data, test_data=datasets(experiment)[1],
                  progress=False)
    assert "\n" not in str(error.value)

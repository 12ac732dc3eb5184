"""benchmarks/epoch_end_cost.py: an epoch's end told apart from its training steps by the history's gaps."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("epoch_end_cost", ROOT / "benchmarks" / "epoch_end_cost.py")
epoch_end_cost = sys.modules["epoch_end_cost"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(epoch_end_cost)


def made_up_history(epochs=5, steps_per_epoch=6, log_every=2, pace=0.5, end=0.7, compile_seconds=5.0):
    """Rows every `log_every` steps; each step `pace` s; each epoch's end `end` s, paid in the gap after it; the
    first gap and the one after the first end also hold a compilation."""
    rows, wall = [], 0.0
    for step in range(log_every, epochs * steps_per_epoch + 1, log_every):
        previous = step - log_every
        wall += pace * log_every + (compile_seconds if previous in (0, steps_per_epoch) else 0.0)
        wall += end if previous and previous % steps_per_epoch == 0 else 0.0
        rows.append({"step": step, "wall_time": wall})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # any row order


def test_the_end_of_an_epoch_is_its_gap_less_the_steps_pace():
    cost = epoch_end_cost.epoch_end_cost(made_up_history(), steps_per_epoch=6)
    assert math.isclose(cost["steps_seconds_per_epoch"], 3.0) and math.isclose(cost["epoch_end_seconds"], 0.7)
    assert math.isclose(cost["end_share"], 0.7 / 3.7)
    # The compilations of the first two epochs are left out: a slower start changes nothing.
    slow_start = epoch_end_cost.epoch_end_cost(made_up_history(compile_seconds=60.0), steps_per_epoch=6)
    assert slow_start == pytest.approx(cost)


def test_a_history_without_rows_inside_epochs_is_refused():
    one_row_an_epoch = made_up_history(log_every=6)
    with pytest.raises(ValueError, match="need rows inside epochs"):
        epoch_end_cost.epoch_end_cost(one_row_an_epoch, steps_per_epoch=6)


def test_a_real_run_gives_a_positive_end_and_steps(mnist_data_dir):
    """The tiny preset on 200 images, batch 50 (4 steps an epoch), a row every step: the end (test pass, history
    row, checkpoint) costs more than nothing."""
    row = epoch_end_cost.measure("tiny", 1, 4, {"data.data_dir": str(mnist_data_dir), "data.batch_size": 50,
                                               "train.log_every": 1})
    assert row["steps_per_epoch"] == 4
    assert row["steps_seconds_per_epoch"] > 0 and row["epoch_end_seconds"] > 0 and 0 < row["end_share"] < 1
    assert np.isfinite([row["steps_seconds_per_epoch"], row["epoch_end_seconds"]]).all()

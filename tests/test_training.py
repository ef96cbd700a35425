"""nlptool.training: the learning-rate schedule with its back-off to the best weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # `import nlptool` loads TensorFlow

import keras
import numpy as np
import pandas as pd
import pytest

from nlptool import training

# Gradient descent on a least-squares line with unit-variance inputs (Hessian about 2 I):
# each full-batch step scales the error by |1 - 2 rate|. At 0.05 it shrinks; at 5 (|1 - 10|)
# and 1.25 (|1 - 2.5|) it grows, so those epochs end worse than the first; at 0.3125 it shrinks.
RATES = [0.05, 5.0, 5.0, 5.0]


def schedule(epoch):
    return RATES[epoch]


def blow_up(epoch):
    return 0.05 if epoch == 0 else 1e30  # one step at 1e30 takes the weights to about 1e30: loss inf


class WeightsAtEpochEnd(keras.callbacks.Callback):
    """Records the weights the next epoch starts from (after every earlier callback)."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [w.copy() for w in self.model.get_weights()]


def fit(run_dir, back_off, epochs=4, rates=schedule):
    """A fresh linear model fitted by full-batch SGD under the schedule; returns (history, recorder)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype(np.float32)
    y = x @ np.array([[2.0], [-1.0]], np.float32)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    recorder = WeightsAtEpochEnd()
    callbacks = training.callbacks(
        run_dir,
        training.epoch_variable(),
        monitor="val_loss",
        mode="min",
        patience=10,
        schedule=rates,
        back_off=back_off,
    )
    model.fit(
        x[:192],
        y[:192],
        validation_data=(x[192:], y[192:]),
        batch_size=192,
        epochs=epochs,
        initial_epoch=training.restore(model, callbacks),
        callbacks=[*callbacks, recorder],
        shuffle=False,
        verbose=0,
    )
    return pd.read_csv(run_dir / "history.csv"), recorder


def test_an_epoch_that_ends_worse_goes_back_to_the_best_weights_at_a_lower_rate(tmp_path):
    history, recorder = fit(tmp_path / "run", back_off=0.25)
    # epochs 1 and 2 end worse than epoch 0, and each cuts the rate for the epochs after it
    assert history["learning_rate"].tolist() == pytest.approx([0.05, 5.0, 1.25, 0.3125])
    losses = history["val_loss"].tolist()
    assert losses[1] > losses[0] and losses[2] > losses[0] and losses[3] < losses[0]
    for epoch in (1, 2):  # both went back to epoch 0's weights, which the checkpoint holds
        for after, best in zip(recorder.weights[epoch], recorder.weights[0], strict=True):
            np.testing.assert_array_equal(after, best)
    assert not (tmp_path / "run" / "backup").exists()  # a finished run keeps no backup, the back-offs' state with it


def test_without_a_back_off_the_run_goes_on_from_where_it_is(tmp_path):
    history, recorder = fit(tmp_path / "run", back_off=None)
    assert history["learning_rate"].tolist() == pytest.approx(RATES)
    losses = history["val_loss"].tolist()
    assert losses[0] < losses[1] < losses[2] < losses[3]  # diverging
    assert not np.array_equal(recorder.weights[1][0], recorder.weights[0][0])


def test_an_epoch_that_overflows_goes_back_to_the_best_weights(tmp_path):
    history, recorder = fit(tmp_path / "run", back_off=0.25, epochs=3, rates=blow_up)
    assert not np.isfinite(history["val_loss"][1:]).any()
    assert history["learning_rate"].tolist() == pytest.approx([0.05, 1e30, 2.5e29])
    for epoch in (1, 2):
        for after, best in zip(recorder.weights[epoch], recorder.weights[0], strict=True):
            np.testing.assert_array_equal(after, best)  # finite: the run ends on a usable model


def test_a_run_interrupted_after_a_back_off_resumes_at_the_lower_rate(tmp_path, interrupted_at_epoch):
    straight, straight_weights = fit(tmp_path / "straight", back_off=0.25)
    with interrupted_at_epoch(2):
        fit(tmp_path / "run", back_off=0.25)
    resumed, resumed_weights = fit(tmp_path / "run", back_off=0.25)
    pd.testing.assert_frame_equal(resumed, straight)
    for a, b in zip(resumed_weights.weights[3], straight_weights.weights[3], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("factor", [0.0, 1.0, 2.0, -0.5])
def test_a_back_off_factor_outside_zero_to_one_is_refused(tmp_path, factor):
    with pytest.raises(ValueError, match="between 0 and 1"):
        training.callbacks(tmp_path, training.epoch_variable(), schedule=schedule, back_off=factor)


def test_a_back_off_without_a_schedule_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs a schedule"):
        training.callbacks(tmp_path, training.epoch_variable(), back_off=0.5)

"""Long work says how long: the estimate line, and the callback that times a fit's first batches."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from adrun import eta


@contextmanager
def adrun_lines(caplog):
    """The records adrun's logger emits in the block, each once. adrun's logger does not propagate (it writes to stdout
    itself), so caplog's handler goes on it directly; pytest ≥ 9.2 puts it there too on set_level (a logger holds a
    handler once), and older versions do not — propagating as well would count each record twice under 9.2."""
    caplog.set_level("WARNING", logger="adrun")
    eta.log.addHandler(caplog.handler)
    try:
        yield caplog.records
    finally:
        eta.log.removeHandler(caplog.handler)


def test_a_phase_over_an_hour_gets_one_line_with_its_estimate_and_the_keys():
    line = eta.long_phase_line(
        "students: teacher p=33's training", 1.35, 50_000, "method.teacher_iterations shortens it"
    )
    assert line == (
        "students: teacher p=33's training will take about 18.8 h on this device (1.35 s/step × 50,000 steps); "
        "method.teacher_iterations shortens it"
    )
    assert eta.long_phase_line("x", 0.07, 50_000, "") is None, "58 minutes: no line"


@pytest.mark.parametrize(("seconds_per_batch", "said"), [(2.0, True), (0.001, False)])
def test_the_callback_times_the_first_batches_and_speaks_once(monkeypatch, caplog, seconds_per_batch, said):
    clock = iter([0.0, eta.TIMED_STEPS * seconds_per_batch])  # read at batch 0 and at batch TIMED_STEPS
    monkeypatch.setattr(eta.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(current_epoch=0, is_global_zero=True, max_epochs=15, num_training_batches=200)
    callback = eta.LongRunWarning("shorten it with method.epochs")
    with adrun_lines(caplog) as records:
        for batch_idx in range(20):
            callback.on_train_batch_end(trainer, None, None, None, batch_idx)
    lines = [r.getMessage() for r in records]
    expected = (
        "training will take about 1.7 h on this device (2.00 s/step × 3,000 steps); shorten it with method.epochs"
    )
    assert lines == ([expected] if said else [])


def test_a_long_test_pass_is_said_too_with_its_own_keys(monkeypatch, caplog):
    clock = iter([0.0, eta.TIMED_STEPS * 30.0])  # AnoGAN's Γ = 500 search: 30 s a batch
    monkeypatch.setattr(eta.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(is_global_zero=True, num_test_batches=[157])
    callback = eta.LongRunWarning(
        "shorten it with method.epochs", "shorten it with data.test_subset, method.iterations"
    )
    with adrun_lines(caplog) as records:
        for batch_idx in range(10):
            callback.on_test_batch_end(trainer, None, None, None, batch_idx)
    assert [r.getMessage() for r in records] == [
        "the test pass will take about 1.3 h on this device (30.00 s/step × 157 steps); shorten it with "
        "data.test_subset, method.iterations"
    ]

"""The live view: per running trial its epoch, loss and metric; an ETA that moves during a long first epoch;
data preparation as one bar per stage in a terminal and plain lines in a pipe."""
from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from orchestrator.execution.console import LiveTrials, RunNotifier, estimate_remaining
from orchestrator.spec.grid import expand_grid
from orchestrator.spec.schema import parse_spec
from tests.conftest import tiny_spec_dict
from tests.support.tune_trials import study_trial

_TRIAL = expand_grid(parse_spec(tiny_spec_dict()))[0]


def _trial(tid: str):
    return study_trial(_TRIAL.replace(trial_id=tid), f"tune-{tid}")


def _configs(n: int, epochs: int) -> list:
    return [SimpleNamespace(trial_id=f"t{i}", epochs=epochs) for i in range(n)]


def test_eta_is_a_growing_lower_bound_until_an_epoch_ends_then_the_measured_mean():
    assert estimate_remaining(4, [], [], 2) == (None, True)
    assert estimate_remaining(4, [], [30.0, 60.0], 2) == (120.0, True)
    assert estimate_remaining(4, [], [30.0, 90.0], 2) == (180.0, True)  # later: the bound grew
    assert estimate_remaining(4, [10.0, 20.0], [100.0], 2) == (30.0, False)
    assert estimate_remaining(0, [], [], 1) == (0.0, False)


def test_live_view_shows_each_running_trial_with_epoch_loss_and_metric():
    now = [0.0]
    view = LiveTrials(_configs(2, 3), "val_balanced_accuracy", enabled=False, clock=lambda: now[0])
    view.on_trial_start(0, [], _trial("t0"))
    view.on_trial_start(0, [], _trial("t1"))
    now[0] = 120.0
    first = view.eta()
    now[0] = 240.0
    assert view.eta()[0] > first[0] and view.eta()[1]  # the ETA moves while the first epochs run
    view.on_trial_result(0, [], _trial("t0"), {"epoch": 1, "loss": 0.6931, "val_balanced_accuracy": 0.5,
                                               "epoch_train_s": 100.0, "val_s": 20.0})
    out = io.StringIO()
    Console(file=out, width=160).print(view.render())
    text = out.getvalue()
    assert "t0" in text and "1/3" in text and "0.6931" in text and "0.5000" in text and "val_balanced_accuracy" in text
    assert "epochs 1/6" in text and "ETA 0:05:00" in text  # 5 epochs left x the measured 120 s, 2 at a time
    view.on_trial_complete(0, [], _trial("t0"))
    assert "t0" not in view.rows and view.finished == 1 and view.epochs_done() == 3


def test_in_a_pipe_trials_and_preparation_are_plain_lines(capsys):
    lines: list[str] = []
    notify = RunNotifier(lines.append, Console(file=io.StringIO()))  # not a terminal
    for done in range(0, 21):
        notify.progress("decoded chunks", done, 20)
    notify("Prepared abc in 1.0 s")
    assert lines[0] == "  decoded chunks: 0/20" and lines[-2] == "  decoded chunks: 20/20" and len(lines) == 12
    assert lines[-1] == "Prepared abc in 1.0 s"

    view = LiveTrials(_configs(1, 2), "val_accuracy", enabled=True)
    view.on_trial_start(0, [], _trial("t0"))
    view.on_trial_result(0, [], _trial("t0"), {"epoch": 1, "loss": 1.25, "val_accuracy": 0.75})
    view.on_trial_complete(0, [], _trial("t0"))
    err = capsys.readouterr().err
    assert "t0: epoch 1/2 loss 1.2500 val_accuracy 0.7500" in err and "[1/1] t0: completed" in err
    assert "\x1b[" not in err  # no terminal control codes in a pipe


def test_in_a_terminal_each_preparation_stage_is_one_bar():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    lines: list[str] = []
    notify = RunNotifier(lines.append, console)
    for stage in ("decoded chunks", "written rows"):
        for done in range(0, 10):
            notify.progress(stage, done, 9)
    assert lines == []  # no line per step
    text = out.getvalue()
    assert "decoded chunks" in text and "written rows" in text and "9/9" in text
    assert notify.bars is None  # every stage finished: the bars are closed


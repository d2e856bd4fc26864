"""Ensembles average stored test probabilities of finished trials."""
from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.report.ensemble import EnsembleError, average_probabilities


def _preds(ids, true, probs):
    df = pd.DataFrame(probs, columns=["p_a", "p_b"])
    df.insert(0, "image_id", ids)
    df.insert(1, "true_class", true)
    return df


def test_average_of_two_trials():
    a = _preds(["x", "y"], ["a", "b"], [[0.9, 0.1], [0.6, 0.4]])
    b = _preds(["y", "x"], ["b", "a"], [[0.0, 1.0], [0.5, 0.5]])  # other row order, same images
    avg, classes = average_probabilities({"t1": a, "t2": b})
    assert classes == ["a", "b"]
    row_y = avg.set_index("image_id").loc["y"]
    assert row_y["p_b"] == pytest.approx(0.7) and row_y["true_class"] == "b"


def test_different_test_images_are_refused():
    a = _preds(["x", "y"], ["a", "b"], [[0.9, 0.1], [0.6, 0.4]])
    b = _preds(["x", "z"], ["a", "b"], [[0.9, 0.1], [0.6, 0.4]])
    with pytest.raises(EnsembleError, match="other test images"):
        average_probabilities({"t1": a, "t2": b})
    with pytest.raises(EnsembleError, match="at least two"):
        average_probabilities({"t1": a})


@pytest.mark.slow
def test_ensemble_command_on_a_finished_run(tmp_path, ray_session, tiny_spec, capsys):
    from orchestrator.cli import main
    from orchestrator import Study

    spec = tiny_spec(name="ens", grid={"architectures": ["cnn", "cnn_lstm"], "epochs": [2]})
    outcome = Study(spec).run(show_progress=False, notify=lambda m: None)
    assert main(["ensemble", outcome.paths.run_id, "--store", str(tmp_path / "store")]) == 0
    printed = capsys.readouterr().out
    assert "ensemble-cnn-cnn_lstm (2 trials)" in printed
    assert list((tmp_path / "store").glob("ens/*/ensembles/ensemble-cnn-cnn_lstm/predictions.csv"))

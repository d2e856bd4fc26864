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


def test_top_members_are_chosen_on_validation_not_test(tmp_path):
    """Validation and test disagree: --top 2 takes the two best on validation and says so."""
    import json

    from orchestrator.run_store import RunPaths, write_trial_record
    from orchestrator.report.ensemble import build_ensemble
    from workers.records import TrialRecord
    from workers.storage import LocalStore

    store, paths = LocalStore(str(tmp_path)), RunPaths("ens", "run1")
    preds = _preds(["x", "y"], ["a", "b"], [[0.9, 0.1], [0.2, 0.8]]).to_csv(index=False)
    # (architecture, test F1, validation F1): test ranks c > b > a, validation ranks a > b > c
    for arch, test_f1, val_f1 in (("a", 0.5, 0.9), ("b", 0.7, 0.8), ("c", 0.9, 0.1)):
        record = TrialRecord(trial_id=f"t-{arch}", config={"architecture": arch}, status="completed",
                             metrics={"f1_macro": test_f1, "validation": {"f1_macro": val_f1}})
        write_trial_record(store, paths, record, {"predictions.csv": preds, "val_predictions.csv": preds})
    assert store.exists(paths.trial("t-a", "val_predictions.csv"))
    record = build_ensemble(store, paths, top=2)
    assert record["members"] == ["t-a", "t-b"]
    assert record["selected_on"] == "validation f1_macro"
    assert record["member_validation"] == {"t-a": 0.9, "t-b": 0.8}
    stored = json.loads(store.get_text(f"{paths.root}/ensembles/{record['name']}/record.json"))
    assert stored["selected_on"] == "validation f1_macro"

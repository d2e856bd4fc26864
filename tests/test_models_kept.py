"""Models kept (``storage.keep_models``): the best trial by validation is stored in Keras' format and, loaded
again, predicts exactly the test probabilities its record holds; ``orchestrator predict`` uses it."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main
from tests.conftest import tiny_spec_dict


def _image_folder(root, classes=("melanoma", "nevus"), train=10, test=4):
    rng = np.random.default_rng(0)
    for split, n in (("Train", train), ("Test", test)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.full((20, 20, 3), 60 + 120 * c, dtype=np.int16)
                img = np.clip(base + rng.integers(-40, 40, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{split}_{name}_{i}.png")
    return root


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.slow
def test_best_model_is_kept_and_predicts_its_records_probabilities(tmp_path, ray_session, capsys):
    from orchestrator.models import load_kept_model, read_models_index, validation_score
    from orchestrator.run_store import RunPaths, read_trial_records
    from orchestrator.study import Study
    from orchestrator.spec.schema import parse_spec
    from workers.storage import LocalStore

    data = _image_folder(tmp_path / "isic")
    store_dir = tmp_path / "store"
    spec = parse_spec(tiny_spec_dict(
        name="kept", store=str(store_dir), dataset={"source": "isic_folder", "path": str(data), "image_size": [16, 16]},
        grid={"architectures": ["cnn"], "epochs": [1, 2], "node_types": ["cpu"], "augmentation": ["none"]}))
    result = Study(spec).run(notify=lambda line: None)
    store, paths = LocalStore(store_dir), RunPaths("kept", result.run_id)

    records = [r for r in read_trial_records(store, paths) if r.status.value == "completed"]
    assert len(records) == 2
    scores = {r.trial_id: validation_score(r, "val_balanced_accuracy") for r in records}
    index = read_models_index(store, paths)
    best = index["best"]["trial_id"]
    assert scores[best] == max(scores.values()) and index["policy"] == "best" and index["kept"] == [best]
    kept_dirs = [p.parent.parent.name for p in (store_dir / paths.root / "trials").glob("*/model/model.keras")]
    assert kept_dirs == [best]  # only the best stays

    loaded = load_kept_model(store, paths)
    assert loaded.meta["trial_id"] == best and loaded.class_names == ["melanoma", "nevus"]
    assert loaded.meta["image_size"] == [16, 16]
    names, probs, unreadable = loaded.predict_folder(data)
    assert not unreadable and len(names) == 28
    predicted = {name.rsplit(".", 1)[0].lower(): p for name, p in zip(names, probs)}  # ids: split/class/stem
    stored = _rows((store_dir / paths.root / "trials" / best / "predictions.csv").read_text())
    assert len(stored) == 7
    for row in stored:
        np.testing.assert_allclose(predicted[row["image_id"].lower()], [float(row["p_melanoma"]),
                                                                        float(row["p_nevus"])], atol=1e-6)

    capsys.readouterr()
    assert main(["predict", result.run_id, str(data / "Test"), "--store", str(store_dir)]) == 0
    printed = _rows(capsys.readouterr().out)
    assert len(printed) == 8 and set(printed[0]) == {"image", "predicted_class", "p_melanoma", "p_nevus"}
    assert main(["predict", result.run_id, str(data / "Test"), "--store", str(store_dir), "--trial", "nope"]) == 2
    assert "kept no model of trial 'nope'" in capsys.readouterr().err
    assert json.loads((store_dir / paths.root / "models.json").read_text())["metric"] == "val_balanced_accuracy"


def _fake_model_dir(path, tid):
    path.mkdir(parents=True)
    (path / "model.keras").write_bytes(b"weights of " + tid.encode())
    (path / "model.json").write_text(json.dumps({"trial_id": tid}))
    return path


def _record(tid, val, status="completed"):
    from workers.records import TrialRecord

    return TrialRecord(trial_id=tid, config={"trial_id": tid}, status=status,
                       history=[{"epoch": 1, "val_balanced_accuracy": 0.1}, {"epoch": 2, "val_balanced_accuracy": val}])


@pytest.mark.parametrize("policy", ["best", "all", "none"])
def test_keep_policies_store_the_right_models(tmp_path, policy):
    from orchestrator.models import ModelKeeper, read_models_index
    from orchestrator.run_store import RunPaths
    from workers.storage import LocalStore

    store, paths = LocalStore(tmp_path / "store"), RunPaths("exp", "run1")
    keeper = ModelKeeper(store, paths, policy, "val_balanced_accuracy", "max")
    for tid, val in (("a", 0.5), ("b", 0.8), ("c", 0.6)):
        keeper.offer(_record(tid, val), _fake_model_dir(tmp_path / tid, tid))
    kept = sorted(k.split("/")[3] for k in store.list("exp/run1/trials/") if k.endswith("model.keras"))
    assert kept == {"best": ["b"], "all": ["a", "b", "c"], "none": []}[policy]
    index = read_models_index(store, paths)
    if policy == "none":
        assert index == {}
        return
    assert index["best"] == {"trial_id": "b", "value": 0.8} and sorted(index["kept"]) == kept
    # a resumed run goes on from what was kept: a worse trial does not replace the best
    again = ModelKeeper(store, paths, policy, "val_balanced_accuracy", "max")
    assert not again.offer(_record("d", 0.7), _fake_model_dir(tmp_path / "d", "d")) or policy == "all"
    assert read_models_index(store, paths)["best"]["trial_id"] == "b"

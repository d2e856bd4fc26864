"""Every input checked before anything starts (issue 28): experiment files, data folders and stored runs that
cannot work are refused with one stderr line naming the field or file, exit 2, no Ray session, nothing written.

Validation only (no Ray, no training): each case runs the command line in this process.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from orchestrator.cli import main
from tests.conftest import tiny_spec_dict


def _write_spec(tmp_path: Path, spec: dict) -> Path:
    spec = {**spec, "storage": {**spec.get("storage", {}), "uri": str(tmp_path / "store"),
                                "local_dir": str(tmp_path / "local")}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _refused(argv: list[str], tmp_path: Path, capsys, monkeypatch, names: str | None = None) -> str:
    """Run the command; assert exit 2, one stderr line (naming ``names``), no Ray session, nothing written."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp"))
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(err) == 1, err
    if names:
        assert names in err[0], err[0]
    assert not (tmp_path / "ray-tmp").exists(), "a Ray session was started"
    for written in ("store", "local"):
        assert not (tmp_path / written).exists(), f"{written} was written"
    return err[0]


# ------------------------------------------------------------------------------------------------ experiment files

BAD_SPECS = {
    "batch_size true": ({"training": {"batch_size": True}}, "training.batch_size"),
    "repeats true": ({"grid": {"architectures": ["cnn"], "epochs": [1], "repeats": True}}, "grid.repeats"),
    "learning rate as text": ({"training": {"learning_rate": "0.01"}}, "training.learning_rate"),
    "tensorboard 1": ({"tracking": {"tensorboard": 1}}, "tracking.tensorboard"),
    "negative CPU": ({"node_types": {"cpu": {"resources": {"CPU": -1}}}}, "CPU"),
    "zero CPU": ({"node_types": {"cpu": {"resources": {"CPU": 0}}}}, "CPU"),
    "NaN GPU": ({"node_types": {"g": {"resources": {"CPU": 1, "GPU": math.nan}}}}, "GPU"),
    "negative GPU": ({"node_types": {"g": {"resources": {"CPU": 1, "GPU": -1}}}}, "GPU"),
    "infinite price": ({"node_types": {"g": {"resources": {"CPU": 1}, "price_per_hour": math.inf}}},
                       "price_per_hour"),
    "duplicate epochs": ({"grid": {"architectures": ["cnn"], "epochs": [1, 1]}}, "grid.epochs"),
    "duplicate architectures": ({"grid": {"architectures": ["cnn", "cnn"], "epochs": [1]}}, "grid.architectures"),
    "node type with /": ({"node_types": {"a/b": {"resources": {"CPU": 1}}}}, "node_types"),
    "node type non-ASCII": ({"node_types": {"gpü": {"resources": {"CPU": 1}}}}, "node_types"),
    "negative seed": ({"seed": -1}, "seed"),
    "negative split seed": ({"split": {"seed": -3}}, "split.seed"),
    "empty class list": ({"dataset": {"classes": []}}, "dataset.classes"),
    "single class": ({"dataset": {"classes": ["melanoma"]}}, "dataset.classes"),
    "drop every listed class": ({"dataset": {"classes": ["melanoma", "nevus"], "drop_classes": ["nevus"]}},
                                "drop_classes"),
    "drop every class": ({"dataset": {"drop_classes": ["actinic keratosis", "basal cell carcinoma",
                                                       "dermatofibroma", "melanoma", "nevus",
                                                       "pigmented benign keratosis", "seborrheic keratosis",
                                                       "squamous cell carcinoma", "vascular lesion"]}},
                         "drop_classes"),
    "mlflow uri not a URI": ({"tracking": {"mlflow": {"uri": "http://"}}}, "tracking.mlflow.uri"),
    "mlflow ftp": ({"tracking": {"mlflow": {"uri": "ftp://host/x"}}}, "tracking.mlflow.uri"),
    "dataset endpoint with credentials": ({"dataset": {"endpoint_url": "http://key:secret@minio:9000"}},
                                          "dataset.endpoint_url"),
    "store endpoint with credentials": ({"storage": {"endpoint_url": "http://key:secret@minio:9000"}},
                                        "storage.endpoint_url"),
    "dataset on http": ({"dataset": {"source": "isic_folder", "path": "http://example.com/isic"}}, "dataset.path"),
    "trial timeout NaN": ({"execution": {"trial_timeout_s": math.nan}}, "execution.trial_timeout_s"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_values_are_refused_in_one_line(tmp_path, capsys, monkeypatch, case):
    overrides, field = BAD_SPECS[case]
    line = _refused(["submit", str(_write_spec(tmp_path, tiny_spec_dict(**overrides)))], tmp_path, capsys,
                    monkeypatch, field)
    assert "secret" not in line


def _nested(depth: int) -> str:
    return "name: deep\ngrid: {architectures: [cnn], epochs: [1]}\ndescription: " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize("kind", ["nested list", "nested map", "fifo", "dev zero", "folder"])
def test_files_that_are_not_experiment_files_are_refused_unread(tmp_path, capsys, monkeypatch, kind):
    path = tmp_path / "exp.yaml"
    if kind == "nested list":
        path.write_text(_nested(5000))
    elif kind == "nested map":
        path.write_text("name: deep\ngrid: {architectures: [cnn], epochs: [1]}\nmodels: " + "{a: " * 5000
                        + "1" + "}" * 5000 + "\n")
    elif kind == "fifo":
        os.mkfifo(path)  # opening it would block: it must be refused by its type
    elif kind == "dev zero":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "a-folder"
        path.mkdir()
    line = _refused(["submit", str(path)], tmp_path, capsys, monkeypatch, str(path))
    assert ("nested" in line) if kind.startswith("nested") else ("not a regular file" in line)


@pytest.mark.parametrize("kind", ["string resources", "list resources", "nested", "fifo"])
def test_bad_cluster_configs_are_refused_in_one_line(tmp_path, capsys, monkeypatch, kind):
    config = tmp_path / "cluster.yaml"
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "nested":
        config.write_text("available_node_types: " + "[" * 3000 + "]" * 3000 + "\n")
    else:
        resources = "lots" if kind == "string resources" else [1, 2]
        config.write_text(yaml.safe_dump({"available_node_types": {"w": {"resources": {"CPU": resources}}}}))
    spec = _write_spec(tmp_path, tiny_spec_dict())
    _refused(["submit", str(spec), "--dry-run", "--cluster-config", str(config)], tmp_path, capsys, monkeypatch,
             str(config))


# The fuzz: every scalar field of a full experiment file, set in turn to values no field should take without
# a word; the command either accepts the file (the value happens to be valid there) or refuses it in one line
# naming the field, and never starts anything for a refused file.
MALFORMED = [True, -1, -1e9, math.nan, math.inf, "", "x" * 300, [], {}, [[1]], "1", 10**12]


def _leaves(value, prefix=()):
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _leaves(sub, (*prefix, key))
    else:
        yield prefix


def _set(data: dict, where: tuple, value) -> dict:
    data = json.loads(json.dumps(data))
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return data


FULL_SPEC = tiny_spec_dict(
    seed=0, description="d",
    training={"batch_size": 16, "learning_rate": 0.001, "optimizer": "adam", "class_weights": False},
    split={"test_fraction": 0.25, "val_fraction": 0.15, "seed": 0, "use_source_test": False},
    augmentation={"augmentor": {"mode": "top_up", "samples_per_class": 12},
                  "random": {"flip": True, "rotation": 0.1, "zoom": 0.1}},
    grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu"], "augmentation": ["none"],
          "frameworks": ["auto"], "repeats": 1},
    execution={"max_retries": 1, "cpus_per_trial": 1, "trial_timeout_s": 60, "exclusive_nodes": False,
               "lost_node_timeout_s": 120, "budget_usd": 10},
    report={"target": {"metric": "val_accuracy", "value": 0.5}},
    tracking={"tensorboard": True, "mlflow": {"uri": "http://127.0.0.1:5000", "request_timeout_s": 5,
                                              "request_retries": 1}},
    node_types={"big": {"resources": {"CPU": 2}, "price_per_hour": 1.0}},
)
FIELDS = [f for f in _leaves(FULL_SPEC) if f[0] != "storage"]


@pytest.mark.parametrize("field", FIELDS, ids=".".join)
def test_fuzz_every_field_is_accepted_or_refused_in_one_line(tmp_path, capsys, monkeypatch, field):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp"))
    for value in MALFORMED:
        path = _write_spec(tmp_path, _set(FULL_SPEC, field, value))
        code = main(["submit", str(path), "--dry-run"])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code in (0, 2), (field, value, code, captured.err[-2000:])
        if code == 2:
            assert len(lines) == 1, (field, value, lines)
            assert field[-1] in lines[0] or field[-2] in lines[0], (field, value, lines[0])
        assert not (tmp_path / "ray-tmp").exists()


# ------------------------------------------------------------------------------------------------------- data


def _image(path: Path, size=(12, 12), seed=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def _isic_folder(root: Path, per_class=None) -> Path:
    for c, n in (per_class or {"melanoma": 6, "nevus": 6}).items():
        for i in range(n):
            _image(root / "Train" / c / f"{c}{i}.jpg", seed=i)
    return root


HAM_HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"


def _ham(root: Path, rows=None, csv: str | None = None, encoding="utf-8") -> Path:
    rows = rows if rows is not None else [(f"L{i}", f"ISIC_{i:07d}", ["mel", "nv"][i % 2]) for i in range(16)]
    for _, image_id, _ in rows:
        _image(root / "HAM10000_images_part_1" / f"{image_id}.jpg")
    text = csv if csv is not None else "\n".join([HAM_HEADER] + [f"{a},{b},{c},histo,50,male,back" for a, b, c in rows])
    (root / "HAM10000_metadata.csv").write_bytes(text.encode(encoding))
    return root


ISIC19 = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def _isic2019(root: Path, lines: list[str] | None = None) -> Path:
    body = []
    for i in range(16):
        _image(root / "ISIC_2019_Training_Input" / f"ISIC_{i:07d}.jpg", seed=i)
        body.append(f"ISIC_{i:07d}," + ",".join("1.0" if c == ISIC19[i % 2] else "0.0" for c in ISIC19))
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text(
        "\n".join(["image," + ",".join(ISIC19)] + body + (lines or [])) + "\n")
    return root


def _data_case(tmp: Path, case: str) -> tuple[dict, str]:
    """(dataset block, text the error line must hold) of one broken data folder."""
    d = tmp / "data"
    iso = {"source": "isic_folder", "path": str(d)}
    if case == "isic: empty class":
        _isic_folder(d)
        (d / "Train" / "empty").mkdir()
        return iso, "empty"
    if case == "isic: class of one image":
        _isic_folder(d, {"melanoma": 6, "nevus": 1})
        return iso, "nevus"
    if case == "isic: every image zero bytes":
        for c in ("melanoma", "nevus"):
            (d / "Train" / c).mkdir(parents=True)
            (d / "Train" / c / "a.jpg").write_bytes(b"")
        return iso, "dataset.path"
    if case == "isic: images only in nested folders":
        _isic_folder(d / "Train" / "melanoma" / "sub")
        _isic_folder(d)
        for p in (d / "Train" / "melanoma").glob("*.jpg"):
            p.unlink()
        return iso, "melanoma"
    if case == "isic: FIFO in the data folder":
        _isic_folder(d)
        os.mkfifo(d / "Train" / "nevus" / "x.jpg")
        return iso, "FIFO"
    if case == "isic: symlink loop":
        _isic_folder(d)
        os.symlink(d / "Train" / "nevus" / "b.jpg", d / "Train" / "nevus" / "a.jpg")
        os.symlink(d / "Train" / "nevus" / "a.jpg", d / "Train" / "nevus" / "b.jpg")
        return iso, "symlink loop"
    if case == "isic: folder symlink to its parent":
        _isic_folder(d)
        os.symlink(d / "Train", d / "Train" / "nevus" / "again")
        return iso, "symlink loop"
    if case == "isic: dangling symlink":
        _isic_folder(d)
        os.symlink(tmp / "nowhere.jpg", d / "Train" / "nevus" / "gone.jpg")
        return iso, "dangling symlink"
    if case == "path is a file":
        d.write_text("x")
        return iso, "dataset.path"
    ham = {"source": "ham10000", "path": str(d)}
    if case == "ham: no CSV":
        _ham(d)
        (d / "HAM10000_metadata.csv").unlink()
        return ham, "dataset.path"
    if case == "ham: semicolons":
        _ham(d, csv="lesion_id;image_id;dx\nL0;ISIC_0000000;mel\n")
        return ham, "';'"
    if case == "ham: latin-1":
        rows = [(f"L{i}", f"ISIC_{i:07d}", ["mel", "nv"][i % 2]) for i in range(16)]
        _ham(d, rows, csv="\n".join([HAM_HEADER] + [f"{a},{b},{c},histo,50,männlich,back" for a, b, c in rows]),
             encoding="latin-1")
        return ham, "UTF-8"
    if case == "ham: header only":
        _ham(d, csv=HAM_HEADER + "\n")
        return ham, "lists no images"
    if case == "ham: no dx column":
        _ham(d, csv="lesion_id,image_id\nL0,ISIC_0000000\n")
        return ham, "'dx'"
    if case == "ham: unknown dx":
        _ham(d, [(f"L{i}", f"ISIC_{i:07d}", ["mel", "nv", "cancer"][i % 3]) for i in range(16)])
        return ham, "cancer"
    if case == "ham: a class without images":
        _ham(d)
        return {**ham, "classes": ["mel", "nv", "df"]}, "df"
    if case == "ham: every image missing":
        _ham(d)
        for p in (d / "HAM10000_images_part_1").glob("*.jpg"):
            p.rename(p.with_name("other-" + p.name))
        return ham, "dataset.path"
    if case == "ham: one lesion only":
        _ham(d, [("L0", f"ISIC_{i:07d}", ["mel", "nv"][i % 2]) for i in range(16)])
        return {**ham, "classes": ["mel", "nv"]}, "lesion"
    if case == "ham: CSV path is a folder":
        _ham(d)
        (d / "meta.csv").mkdir()
        return {**ham, "metadata_csv": "meta.csv"}, "dataset.metadata_csv"
    i19 = {"source": "isic2019", "path": str(d)}
    if case == "isic2019: row summing to 2":
        _isic2019(d, ["ISIC_0000099," + ",".join("1.0" if c in ("MEL", "NV") else "0.0" for c in ISIC19)])
        return i19, "sum to 2"
    if case == "isic2019: text labels":
        _isic2019(d, ["ISIC_0000099," + ",".join("yes" if c == "MEL" else "no" for c in ISIC19)])
        return i19, "0 or 1"
    if case == "isic2019: no image column":
        _isic2019(d)
        p = d / "ISIC_2019_Training_GroundTruth.csv"
        p.write_text(p.read_text().replace("image,", "name,", 1))
        return i19, "'image'"
    if case == "isic2019: repeated header":
        _isic2019(d, ["image," + ",".join(ISIC19)])
        return i19, "repeats the header"
    if case == "isic2019: a 3-cell row":
        _isic2019(d, ["ISIC_0000099,1.0,0.0"])
        return i19, "3 cells"
    raise KeyError(case)


DATA_CASES = ["isic: empty class", "isic: class of one image", "isic: every image zero bytes",
              "isic: images only in nested folders", "isic: FIFO in the data folder", "isic: symlink loop",
              "isic: folder symlink to its parent", "isic: dangling symlink", "path is a file", "ham: no CSV",
              "ham: semicolons", "ham: latin-1", "ham: header only", "ham: no dx column", "ham: unknown dx",
              "ham: a class without images", "ham: every image missing", "ham: one lesion only",
              "ham: CSV path is a folder", "isic2019: row summing to 2", "isic2019: text labels",
              "isic2019: no image column", "isic2019: repeated header", "isic2019: a 3-cell row"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_broken_data_folders_are_refused_before_ray_starts(tmp_path, capsys, monkeypatch, case):
    dataset, names = _data_case(tmp_path, case)
    spec = _write_spec(tmp_path, tiny_spec_dict(dataset={**dataset, "image_size": [16, 16]}))
    _refused(["submit", str(spec)], tmp_path, capsys, monkeypatch, names)


def test_a_sound_data_folder_passes_the_checks(tmp_path):
    """The checks refuse only what cannot work: a small sound folder of each source passes them."""
    from orchestrator.spec.schema import parse_spec
    from orchestrator.study import Study

    for source, make in (("isic_folder", _isic_folder), ("ham10000", _ham), ("isic2019", _isic2019)):
        root = make(tmp_path / source)
        if source == "isic_folder":
            (root / "Train" / "__MACOSX").mkdir()  # what zip tools leave: not a class
        classes = ["mel", "nv"] if source == "ham10000" else "all"
        spec = parse_spec(tiny_spec_dict(dataset={"source": source, "path": str(root), "image_size": [16, 16],
                                                  "classes": classes}, store=str(tmp_path / "store")))
        Study(spec).check_inputs()


def test_images_decode_as_the_eye_sees_them(tmp_path):
    from workers.data.sources import decode_image

    grey16 = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 256)  # 0 .. 65280
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    Image.fromarray(grey16).save(tmp_path / "g16.tif")
    for name in ("g16.png", "g16.tif"):
        img = decode_image(tmp_path / name, (16, 16))
        assert 100 < img.mean() < 155 and img.min() < 10, name  # scaled, not clipped to white
    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, :8] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(wide).save(tmp_path / "o.png", exif=exif)
    shown = decode_image(tmp_path / "o.png", (16, 8))
    assert shown[:8].mean() > 200 and shown[8:].mean() < 50  # the white half is on top, as displayed
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert decode_image(tmp_path / "a.png", (8, 8))[0, 0].tolist() == [200, 0, 0]


# ------------------------------------------------------------------------------------------------ stored runs


def _stored_run(tmp_path: Path, experiment="tiny", run_id="r1", store=None) -> tuple[Path, list[str]]:
    """A run in a local store as a driver leaves it: spec.yaml, run.json and one failed record per trial."""
    from orchestrator.spec.schema import parse_spec, spec_to_yaml
    from orchestrator.study import Study

    store = store or tmp_path / "runs"
    spec = parse_spec(tiny_spec_dict(name=experiment, grid={"architectures": ["cnn", "cnn_lstm"], "epochs": [1]},
                                     store=str(store)))
    root = store / experiment / run_id
    ids = []
    for trial in Study(spec).trials():
        (root / "trials" / trial.trial_id).mkdir(parents=True)
        (root / "trials" / trial.trial_id / "record.json").write_text(json.dumps(
            {"trial_id": trial.trial_id, "config": trial.to_dict(), "status": "failed", "error": "x"}))
        ids.append(trial.trial_id)
    (root / "spec.yaml").write_text(spec_to_yaml(spec))
    (root / "run.json").write_text(json.dumps({"experiment": experiment, "run_id": run_id}))
    return root, ids


def _tree(path: Path) -> dict:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["invalid JSON", "empty", "binary", "unknown status", "list run.json",
                                    "invalid run.json", "spec.yaml deleted", "spec.yaml edited"])
def test_resume_of_a_damaged_run_is_one_line_before_anything_starts(tmp_path, capsys, monkeypatch, damage):
    root, ids = _stored_run(tmp_path)
    record = root / "trials" / ids[0] / "record.json"
    if damage == "invalid JSON":
        record.write_text("{")
    elif damage == "empty":
        record.write_text("")
    elif damage == "binary":
        record.write_bytes(bytes(range(256)))
    elif damage == "unknown status":
        record.write_text(record.read_text().replace('"failed"', '"exploded"'))
    elif damage == "list run.json":
        (root / "run.json").write_text("[]")
    elif damage == "invalid run.json":
        (root / "run.json").write_text("{nope")
    elif damage == "spec.yaml deleted":
        (root / "spec.yaml").unlink()
    else:
        spec = yaml.safe_load((root / "spec.yaml").read_text())
        spec["grid"]["epochs"] = [2]
        (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = _tree(tmp_path / "runs")
    names = {"list run.json": "run.json", "invalid run.json": "run.json", "spec.yaml deleted": "spec.yaml",
             "spec.yaml edited": "spec.yaml"}.get(damage, "record.json")
    line = _refused(["resume", "r1", "--store", str(tmp_path / "runs")], tmp_path, capsys, monkeypatch, names)
    assert "r1" in line
    assert _tree(tmp_path / "runs") == before, "the store was changed"


def test_report_and_ensemble_say_which_records_were_skipped(tmp_path, capsys, monkeypatch):
    root, ids = _stored_run(tmp_path)
    (root / "trials" / ids[0] / "record.json").write_text("{")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp"))
    assert main(["report", "r1", "--store", str(tmp_path / "runs")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable record" in err and ids[0] in err
    assert main(["ensemble", "r1", "--store", str(tmp_path / "runs")]) == 2  # no completed trials: one line
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "ray-tmp").exists()


def test_an_ambiguous_run_id_asks_for_the_experiment(tmp_path, capsys, monkeypatch):
    _stored_run(tmp_path, experiment="alpha")
    _stored_run(tmp_path, experiment="beta")
    line = _refused(["report", "r1", "--store", str(tmp_path / "runs")], tmp_path, capsys, monkeypatch,
                    "experiment/run_id")
    assert "alpha" in line and "beta" in line
    assert main(["report", "beta/r1", "--store", str(tmp_path / "runs")]) == 0


# ------------------------------------------------------------------------------------------------ command line

BAD_ARGS = {
    "unknown flag": (["submit", "x.yaml", "--bogus"], "--bogus"),
    "missing argument": (["submit"], "file"),
    "--max-cost nan": (["submit", "x.yaml", "--max-cost", "nan"], "--max-cost"),
    "--max-cost -1": (["submit", "x.yaml", "--max-cost", "-1"], "--max-cost"),
    "--store ''": (["submit", "x.yaml", "--store", ""], "--store"),
    "report --upload ''": (["report", "r1", "--upload", ""], "--upload"),
    "ensemble --top 0": (["ensemble", "r1", "--top", "0"], "--top"),
    "status --timeout inf": (["status", "j", "--timeout", "inf"], "--timeout"),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_command_line_errors_are_one_line_without_usage(tmp_path, capsys, monkeypatch, case):
    argv, names = BAD_ARGS[case]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0] and not err[0].startswith("usage"), err


def test_ensemble_by_an_unknown_metric_writes_nothing(tmp_path, capsys, monkeypatch):
    root, _ = _stored_run(tmp_path)
    before = _tree(tmp_path / "runs")
    line = _refused(["ensemble", "r1", "--by", "no_such_metric", "--top", "2", "--store", str(tmp_path / "runs")],
                    tmp_path, capsys, monkeypatch, "--by")
    assert "f1_macro" in line and _tree(tmp_path / "runs") == before


def test_to_mlflow_at_a_closed_port_gives_up_in_seconds(tmp_path, capsys, monkeypatch):
    import socket
    import time

    pytest.importorskip("mlflow")
    _stored_run(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    t = time.monotonic()
    _refused(["report", "r1", "--to-mlflow", f"http://127.0.0.1:{port}", "--store", str(tmp_path / "runs")],
             tmp_path, capsys, monkeypatch, "--to-mlflow")
    assert time.monotonic() - t < 60  # MLflow alone retries for minutes


# ------------------------------------------------------------------------------------------------------ faults


def test_a_damaged_cache_index_is_prepared_again(tmp_path):
    from orchestrator.execution.data_preparation import cached_index
    from workers.storage import LocalStore

    store = LocalStore(tmp_path / "store")
    for damage in ("[]", '{"format": "x"}', "not json", '{"files": {"a": {}}}'):
        store.put_text("cache/prepared/k/index.json", damage)
        assert cached_index(store, "k") is None, damage  # not a crash: the setting is prepared again


def test_a_run_held_by_a_live_driver_is_refused(tmp_path, capsys, monkeypatch):
    """A second submission of a run id while a driver holds it: one line, nothing started or changed."""
    import socket

    spec = _write_spec(tmp_path, tiny_spec_dict())
    lock = tmp_path / "store" / "tiny" / "twins" / "driver.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "other"}))
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp"))
    before = _tree(tmp_path / "store")
    assert main(["submit", str(spec), "--run-id", "twins"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another driver" in err[0] and "twins" in err[0], err
    assert _tree(tmp_path / "store") == before
    assert not (tmp_path / "ray-tmp").exists()


def test_the_run_lock_of_a_dead_driver_is_taken_over_and_given_back(tmp_path):
    import socket
    import subprocess
    import sys

    from orchestrator.execution.run_lock import RunLock
    from orchestrator.run_store import RunPaths
    from workers.storage import LocalStore

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store, paths = LocalStore(tmp_path / "store"), RunPaths("tiny", "r1")
    store.put_text("tiny/r1/driver.lock", json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    lock = RunLock(store, paths).acquire()
    from orchestrator.errors import RunBusy

    with pytest.raises(RunBusy):
        RunLock(store, paths).acquire()  # held by this process now
    lock.release()
    assert not (tmp_path / "store").exists()  # a run that wrote nothing else leaves nothing behind


def test_a_store_that_cannot_be_written_any_more_falls_back_to_local_disk(tmp_path):
    from orchestrator.execution.fallback_store import FallbackStore
    from workers.storage import LocalStore

    primary = LocalStore(tmp_path / "store")
    store = FallbackStore(primary, LocalStore(tmp_path / "local"), journal=False)
    store.put_text("run/trials/a/record.json", "{}")
    assert store.local_path("x") == primary.local_path("x")  # the store's own paths while it is sound
    (tmp_path / "store" / "run" / "trials" / "b").write_text("a file where a folder must go")  # the disk refuses
    store.put_text("run/trials/b/record.json", "{}")
    assert store.degraded and "run/trials/b/record.json" in str(store.error)
    assert (tmp_path / "store" / "run" / "trials" / "a" / "record.json").exists()  # kept where it was
    assert (tmp_path / "local" / "run" / "trials" / "b" / "record.json").exists()  # the rest goes local
    assert {"run/trials/a/record.json", "run/trials/b/record.json"} <= set(store.list("run/trials/"))


def test_an_unreachable_object_store_is_asked_once_then_the_run_reads_its_local_copy(tmp_path):
    from orchestrator.execution.fallback_store import FallbackStore
    from workers.storage import LocalStore, Store, StorageError

    class Unreachable(Store):  # an object store that went down: every call fails (after its own retries)
        uri = "s3://bucket/studies"

        def __init__(self):
            self.calls = []

        def _fail(self, name):
            self.calls.append(name)
            raise StorageError(f"{name} failed on {self.uri}: connection refused")

        def put_bytes(self, key, data, content_type=None):
            self._fail("put_bytes")

        def get_bytes(self, key):
            self._fail("get_bytes")

        def exists(self, key):
            self._fail("exists")

        def list(self, prefix=""):
            self._fail("list")

        def delete(self, key):
            self._fail("delete")

    primary = Unreachable()
    store = FallbackStore(primary, LocalStore(tmp_path / "local"))
    store.put_text("run/trials/a/record.json", "{}")
    assert store.degraded and primary.calls == ["put_bytes"]
    store.put_text("run/trials/b/record.json", "{}")
    assert store.list("run/trials/") == ["run/trials/a/record.json", "run/trials/b/record.json"]
    assert store.exists("run/trials/a/record.json") and not store.exists("run/report/index.html")
    assert store.get_text("run/trials/b/record.json") == "{}"
    with pytest.raises(StorageError, match="run/spec.yaml is not in the local copy.*connection refused"):
        store.get_bytes("run/spec.yaml")  # written by nobody in this run: the outage's error, at once
    store.delete("run/trials/a/record.json")
    assert primary.calls == ["put_bytes"]  # the outage was paid for once


# ------------------------------------------------------------------------ faults and Ray's ports (start Ray)


@pytest.mark.slow
def test_trial_timeout_stops_and_records_the_trial_that_exceeds_it(tmp_path, ray_session):
    """The 90 s trial is stopped (a trial left alone would complete) and recorded as timed out; the other
    completes."""
    from orchestrator import Study
    from orchestrator.spec.schema import parse_spec
    from benchmarks.sleep_trainable import sleep_trainable

    spec = parse_spec(tiny_spec_dict(
        store=str(tmp_path / "store"), grid={"architectures": ["cnn", "cnn_lstm"], "epochs": [1]},
        models={"cnn": {"params": {"seconds": 90}}, "cnn_lstm": {"params": {"seconds": 1}}},
        execution={"cpus_per_trial": 1, "max_retries": 0, "trial_timeout_s": 12}))
    result = Study(spec, trainable=sleep_trainable).run(show_progress=False, notify=lambda _: None)
    by_arch = {r.config["architecture"]: r for r in result.records}
    assert by_arch["cnn"].status.value == "failed" and "timed out" in by_arch["cnn"].error
    assert "execution.trial_timeout_s" in by_arch["cnn"].error
    assert by_arch["cnn_lstm"].status.value == "completed"


@pytest.mark.slow
def test_trial_timeout_stops_and_records_search_trials_too(tmp_path, ray_session):
    """A search honours execution.trial_timeout_s like a study: samples still sleeping are stopped and recorded."""
    from orchestrator import Search
    from orchestrator.spec.schema import parse_spec
    from benchmarks.sleep_trainable import sleep_trainable

    spec = parse_spec(tiny_spec_dict(
        store=str(tmp_path / "store"), grid={"architectures": ["cnn"], "epochs": [1]},
        models={"cnn": {"params": {"seconds": 120}}},
        search={"architecture": "cnn", "epochs": 1, "scheduler": "fifo", "num_samples": 2,
                "space": {"learning_rate": {"loguniform": [0.0001, 0.01]}}},
        execution={"cpus_per_trial": 1, "max_retries": 0, "trial_timeout_s": 10}))
    result = Search(spec, trainable=sleep_trainable).run(notify=lambda _: None)
    assert len(result.records) == 2
    for record in result.records:
        assert record.status.value == "failed" and "execution.trial_timeout_s" in record.error


@pytest.mark.slow
def test_a_store_that_fails_mid_run_loses_nothing_and_says_where_results_are(tmp_path, ray_session):
    from orchestrator import Study
    from orchestrator.spec.schema import parse_spec
    from tests.support.trainables import store_refuses_trial_of

    spec = parse_spec(tiny_spec_dict(
        store=str(tmp_path / "store"), grid={"architectures": ["cnn", "cnn_lstm"], "epochs": [1]},
        storage={"uri": str(tmp_path / "store"), "local_dir": str(tmp_path / "local")},
        execution={"cpus_per_trial": 1, "max_retries": 0, "max_concurrent_trials": 1}))
    result = Study(spec, run_id="full", trainable=store_refuses_trial_of("cnn_lstm", "full")).run(
        show_progress=False, notify=lambda _: None)
    assert result.store_problem and str(tmp_path / "local") in result.store_problem
    assert "--upload" in result.store_problem
    kept = {p.parent.name for p in (tmp_path / "store").glob("tiny/full/trials/*/record.json")}
    moved = {p.parent.name for p in (tmp_path / "local").glob("tiny/full/trials/*/record.json")}
    assert len(kept | moved) == 2 and all(r.status.value == "completed" for r in result.records)
    assert any(t.startswith("cnn_lstm") for t in moved)


@pytest.mark.slow
def test_the_embedded_ray_refuses_a_connection_without_the_runs_token(tmp_path, ray_session):
    """Ray's GCS listens on every interface; a client without this run's token is refused, one with it is not,
    and the token file is readable by this user only."""
    import stat
    import subprocess
    import sys

    import ray

    token_path = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_path.parent.stat().st_mode) == 0o700
    gcs = ray.get_runtime_context().gcs_address
    probe = (f"import ray\ntry:\n    ray.init(address={gcs!r}, log_to_driver=False)\n    print('CONNECTED')\n"
             "except Exception as err:\n    print('REFUSED', type(err).__name__)\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    base["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    clients = {name: subprocess.Popen([sys.executable, "-c", probe], env={**base, **extra}, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, extra in {"no token": {"RAY_AUTH_MODE": "disabled"},
                                   "wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"},
                                   "the run's token": {"RAY_AUTH_MODE": "token",
                                                       "RAY_AUTH_TOKEN_PATH": str(token_path)}}.items()}
    outcomes = {}
    try:
        for name, proc in clients.items():  # the three clients try at once (a refused one waits out Ray's retries)
            out, err = proc.communicate(timeout=180)
            outcomes[name] = out.strip().splitlines()[-1] if out.strip() else err[-300:]
    finally:
        for proc in clients.values():  # none outlives the test, as subprocess.run's timeout ensured
            proc.kill()
            proc.wait()
    assert outcomes["no token"].startswith("REFUSED"), outcomes
    assert outcomes["wrong token"].startswith("REFUSED"), outcomes
    assert outcomes["the run's token"] == "CONNECTED", outcomes


def test_an_endpoint_url_with_credentials_is_refused_on_the_command_line(tmp_path, capsys, monkeypatch):
    _stored_run(tmp_path)
    line = _refused(["report", "r1", "--store", str(tmp_path / "runs"), "--endpoint-url",
                     "http://AKIA:hunter2@127.0.0.1:9000"], tmp_path, capsys, monkeypatch, "--endpoint-url")
    assert "hunter2" not in line

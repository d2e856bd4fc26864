"""Experiment-file validation and grid expansion (no Ray, no training)."""
from __future__ import annotations

import pytest

from orchestrator.spec.grid import expand_grid
from orchestrator.spec.schema import SpecError, load_spec, parse_spec
from tests.conftest import tiny_spec_dict


def _write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("mutate, field, hint", [
    (lambda d: d["grid"].update(architectures=["cnn", "cnnn"]), "grid.architectures[1]", "unknown architecture 'cnnn'"),
    (lambda d: d["grid"].update(epochs=[5, -1]), "grid.epochs", "whole number from 1 to 10000"),
    (lambda d: d["grid"].update(epochs=[0]), "grid.epochs", "whole number from 1 to 10000"),
    (lambda d: d["grid"].update(epochs=[]), "grid.epochs", "at least 1"),
    (lambda d: d["grid"].update(node_types=["cpu", "quantum"]), "grid.node_types[1]", "unknown node type 'quantum'"),
    (lambda d: d["grid"].update(augmentation=["sometimes"]), "grid.augmentation[0]", "'none', 'random' or 'augmentor'"),
    (lambda d: d["training"].update(batchsize=32), "training.batchsize", "unknown key"),
    (lambda d: d["training"].update(batch_size="big"), "training.batch_size", "integer"),
    (lambda d: d["dataset"].update(source="imagenet"), "dataset.source", "unknown source 'imagenet' (valid: dermamnist"),
    (lambda d: d["dataset"].update(source="isic_folder"), "dataset.path", "is required for source 'isic_folder'"),
    (lambda d: d["dataset"].update(source="isic_folder", path="../../etc"), "dataset", "must not contain '..'"),
    (lambda d: d["dataset"].update(image_size=[4, 4]), "dataset.image_size", "between 8 and 1024"),
    (lambda d: d.update(name="../escape"), "name", "letters, digits"),
    (lambda d: d["grid"].update(architectures=["resnet50"]), "dataset.image_size", "needs images of at least 32x32"),
    (lambda d: d.update(models={"resnet50": {"weights": "imagenet"}}), "models.resnet50", "weights_path"),
    (lambda d: d.pop("grid"), "grid", "required field is missing"),
    (lambda d: d["split"].update(test_fraction=0.8, val_fraction=0.15), "split", "below 0.9"),
    (lambda d: d["augmentation"].update(augmentor={"mode": "double"}), "augmentation.augmentor.mode", "'top_up' or 'add'"),
    (lambda d: d["augmentation"].update(augmentor_samples_per_class=9), "augmentation", "not both"),
])
def test_invalid_spec_names_the_field(mutate, field, hint):
    data = tiny_spec_dict()
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data, "exp.yaml")
    message = str(err.value)
    assert message.startswith(f"exp.yaml: {field}"), message
    assert hint in message
    assert "\n" not in message


def test_yaml_syntax_error_is_one_line_with_position(tmp_path):
    path = _write(tmp_path, "name: x\ngrid:\n  architectures: [cnn\n  epochs: [1]\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "YAML syntax error at line" in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(SpecError, match="cannot read experiment file"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(_write(tmp_path, "- just\n- a list\n"))


def test_yaml_is_loaded_safely(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\ngrid: {architectures: [cnn], epochs: [1]}\n")
    with pytest.raises(SpecError):
        load_spec(path)


def test_shipped_experiment_files_validate():
    for name in ("quickstart", "hardware_study"):
        spec = load_spec(f"experiments/{name}.yaml")
        assert expand_grid(spec)


def test_hardware_study_is_the_seed_000_design():
    spec = load_spec("experiments/hardware_study.yaml")
    assert spec.grid.architectures == ["cnn", "cnn_lstm", "lstm_cnn", "resnet50"]
    assert {10, 20, 50, 100, 40} == set(spec.grid.epochs)
    assert spec.grid.node_types == ["cpu", "gpu", "tpu"]
    assert spec.dataset.image_size == (120, 120) and spec.training.batch_size == 32
    assert spec.split.test_fraction == 0.2
    assert spec.augmentation.augmentor.samples_per_class == 500 and spec.augmentation.augmentor.mode == "add"
    assert set(spec.grid.augmentation) == {"none", "random", "augmentor"}


def test_augmentor_mode_defaults_to_top_up_and_the_older_key_still_reads():
    spec = parse_spec(tiny_spec_dict(augmentation={"augmentor": {"samples_per_class": 12}}))
    assert spec.augmentation.augmentor.model_dump() == {"mode": "top_up", "samples_per_class": 12}
    data = tiny_spec_dict()
    data["augmentation"] = {"augmentor_samples_per_class": 40}
    assert parse_spec(data).augmentation.augmentor.model_dump() == {"mode": "top_up", "samples_per_class": 40}


def test_grid_is_the_full_cross_product_with_repeats():
    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn", "cnn_lstm"], "epochs": [1, 3],
                                           "node_types": ["cpu", "gpu", "tpu"], "augmentation": ["none", "augmentor"],
                                           "repeats": 2}))
    trials = expand_grid(spec)
    assert len(trials) == 2 * 2 * 3 * 2 * 2
    combos = {(t.architecture, t.epochs, t.node_type, t.augmentation, t.repeat) for t in trials}
    assert len(combos) == len(trials)
    assert len({t.trial_id for t in trials}) == len(trials)


def test_trial_ids_are_deterministic_and_depend_on_settings():
    a = expand_grid(parse_spec(tiny_spec_dict()))
    b = expand_grid(parse_spec(tiny_spec_dict()))
    assert [t.trial_id for t in a] == [t.trial_id for t in b]
    c = expand_grid(parse_spec(tiny_spec_dict(training={"learning_rate": 0.01})))
    assert a[0].trial_id != c[0].trial_id
    assert a[0].trial_id.startswith("cnn-e1-cpu-none-tensorflow-r0-")


def test_node_types_map_to_resources_and_one_stack_per_study():
    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu", "gpu", "tpu"]},
                                     execution={"cpus_per_trial": None}))
    by_node = {t.node_type: t for t in expand_grid(spec)}
    assert by_node["cpu"].resources == {"CPU": 1} and by_node["gpu"].resources == {"CPU": 1, "GPU": 1}
    assert by_node["tpu"].resources == {"CPU": 1, "TPU": 1}
    # one stack for every node type: the backend all three drive, float32 (a CPU is in the study), XLA, 1 step
    stacks = {(t.framework, t.training.mixed_precision, t.training.jit_compile, t.training.steps_per_execution,
               t.training.batch_size) for t in by_node.values()}
    assert stacks == {("jax", "off", True, 1, spec.training.batch_size)}
    cpu_only = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu"]}))
    assert expand_grid(cpu_only)[0].framework == "tensorflow" and not expand_grid(cpu_only)[0].training.jit_compile
    accelerators = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [1],
                                                   "node_types": ["gpu", "tpu"]}))
    assert {(t.framework, t.training.mixed_precision) for t in expand_grid(accelerators)} == {("jax", "bfloat16")}


def test_a_node_type_sets_its_own_stack_only_explicitly_and_the_dry_run_says_so():
    from orchestrator.spec.stack import stack_lines

    spec = parse_spec(tiny_spec_dict(
        grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu", "gpu"]},
        node_types={"gpu": {"resources": {"CPU": 1, "GPU": 2}, "mixed_precision": "bfloat16",
                            "steps_per_execution": 4}}, training={"batch_size": 8}))
    by_node = {t.node_type: t for t in expand_grid(spec)}
    assert by_node["cpu"].training.mixed_precision == "off" and by_node["cpu"].training.steps_per_execution == 1
    assert by_node["gpu"].training.mixed_precision == "bfloat16" and by_node["gpu"].training.steps_per_execution == 4
    assert by_node["gpu"].price_per_hour is None  # its own node type names no priced instance
    lines = stack_lines(spec)
    assert lines[0] == "cpu: jax, float32, XLA, 1 device x 8 per device (global batch 8), 1 steps/execution"
    assert lines[1].startswith("gpu: jax, mixed_bfloat16, XLA, 2 devices x 4 per device (global batch 8), 4 steps")
    assert "own stack: mixed_precision=bfloat16, steps_per_execution=4" in lines[1]


def test_prices_come_from_the_price_table_and_every_shipped_file_agrees_with_it():
    from pathlib import Path

    from orchestrator.spec.prices import price_table

    table = price_table()
    assert all({"provider", "region", "date", "usd_per_hour", "source"} <= set(e) for e in table.values())
    for path in sorted(Path("experiments").glob("*.yaml")):
        spec = load_spec(path)
        for name in dict.fromkeys(spec.grid.node_types):
            nt = spec.resolved_node_types()[name]
            assert nt.instance in table, f"{path}: node type {name} names no priced instance"
            assert nt.price_per_hour == table[nt.instance]["usd_per_hour"], f"{path}: {name}"
    with pytest.raises(SpecError, match=r"node_types.cpu: instance: unknown instance 'm9.huge'"):
        parse_spec(tiny_spec_dict(node_types={"cpu": {"resources": {"CPU": 1}, "instance": "m9.huge"}}))


def test_custom_node_type_and_explicit_framework():
    spec = parse_spec(tiny_spec_dict(
        node_types={"fpga": {"resources": {"CPU": 2, "FPGA": 1}, "price_per_hour": 1.5}},
        grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["fpga"], "frameworks": ["torch"]},
        execution={"cpus_per_trial": None}))
    (trial,) = expand_grid(spec)
    assert trial.resources == {"CPU": 2, "FPGA": 1} and trial.framework == "torch" and trial.price_per_hour == 1.5
    spec = parse_spec(tiny_spec_dict(node_types={"fpga": {"resources": {"CPU": 1, "FPGA": 1}}},
                                     grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["fpga"]}))
    assert expand_grid(spec)[0].price_per_hour is None  # unknown, not free


def test_repeats_get_distinct_seeds():
    trials = expand_grid(parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [1], "repeats": 3})))
    assert len({t.seed for t in trials}) == 3

"""The registries (architectures, dataset sources, device kinds): one generic type, and a kind, a source and an
architecture added from tests/support/plugins.py through the public API with no product file edited."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import BadInput, SpecError
from orchestrator.spec.schema import parse_spec
from orchestrator.study import Study
from tests.conftest import tiny_spec_dict
from tests.support import plugins
from workers.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _registries_restored(monkeypatch):
    """What a test registers stays in that test: later tests see only the product's own entries."""
    from workers.accelerators import ACCELERATORS
    from workers.data.sources import SOURCES
    from workers.models.registry import ARCHITECTURES

    for registry in (ACCELERATORS, SOURCES, ARCHITECTURES):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_registry_refuses_duplicates_lists_names_and_names_valid_ones_when_unknown():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.names() == ["a", "b"] and reg.entries() == [2, 1] and reg.get("a") == 1 and "b" in reg
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.add("a", 3)
    with pytest.raises(KeyError) as err:
        reg.get("c")
    assert str(err.value) == "unknown widget 'c' (valid: a, b)"


def test_device_kinds_one_precedence_order_and_built_in_node_types_from_the_entries():
    from orchestrator.report.tables import requested_device
    from orchestrator.spec.schema import default_node_types
    from workers.accelerators import accelerator, kind_of
    from workers.device import expected_kind

    for resources, kind in (({"CPU": 1}, "cpu"), ({"GPU": 1}, "gpu"), ({"TPU": 4}, "tpu"), ({"GPU": 1, "TPU": 1}, "tpu")):
        assert kind_of(resources) == expected_kind(resources) == requested_device({"resources": resources}) == kind
    built_in = default_node_types()
    assert {n: nt.resources for n, nt in built_in.items() if n in ("cpu", "gpu", "tpu")} == {
        "cpu": {"CPU": 1}, "gpu": {"CPU": 1, "GPU": 1}, "tpu": {"CPU": 1, "TPU": 1}}
    assert accelerator("tpu").steps_per_execution == 32 and accelerator("gpu").backends[0] == "jax"


def test_new_device_kind_gets_a_built_in_node_type_and_its_own_defaults():
    plugins.register_npu()
    from orchestrator.spec.schema import default_node_types
    from workers.distribution import jit_compile, steps_per_execution
    from workers.device import device_problem

    assert default_node_types()["npu"].resources == {"CPU": 1, "NPU": 1}
    assert steps_per_execution(None, "npu") == 4 and jit_compile("tensorflow", "npu") == "auto"
    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["npu"]}))
    assert Study(spec).trials()[0].resources == {"CPU": 1, "NPU": 1}
    problem = device_problem({"mismatch": True, "simulated": None, "expected_kind": "npu", "backend": "tensorflow",
                              "requested": "npu", "used": {"kind": "cpu", "name": "x"}, "host": "h"})
    assert "asks for a npu" in problem and "pip install npu-runtime" in problem


def test_new_source_validated_planned_and_checked_through_the_public_api():
    plugins.register_tiny_source()
    plugins.register_tiny_source(with_counts=False)
    spec = parse_spec(tiny_spec_dict(dataset={"source": plugins.TINY_SOURCE, "image_size": [16, 16]}))
    estimate = Study(spec).plan().estimate
    assert estimate["total"]["trial_hours"] is not None  # the source's own count (24 images), not 1 per epoch
    with pytest.raises(BadInput, match="dataset.classes: class 'nevus' is not in the data"):
        Study(parse_spec(tiny_spec_dict(dataset={"source": plugins.TINY_SOURCE, "classes": ["nevus"]}))).check_inputs()
    with pytest.raises(BadInput, match="tiny_arrays makes even sizes only"):  # the source's check hook
        Study(parse_spec(tiny_spec_dict(dataset={"source": plugins.TINY_SOURCE, "image_size": [17, 17]}))).check_inputs()
    uncounted = Study(parse_spec(tiny_spec_dict(dataset={"source": "tiny_uncounted"}))).plan().estimate
    assert uncounted["total"]["cost_usd"] is None
    assert "no image count for dataset source 'tiny_uncounted'" in uncounted["rows"][0]["throughput_source"]
    with pytest.raises(SpecError, match=r"dataset.source: unknown source 'imagenet' \(valid: .*tiny_arrays"):
        parse_spec(tiny_spec_dict(dataset={"source": "imagenet"}))
    from workers.data import load_dataset

    assert load_dataset({"source": plugins.TINY_SOURCE, "image_size": [8, 8], "samples_per_class": 3}).images.shape \
        == (6, 8, 8, 3)


def test_new_architecture_validated_and_built_through_the_public_api():
    plugins.register_tiny_arch()
    spec = parse_spec(tiny_spec_dict(grid={"architectures": [plugins.TINY_ARCH], "epochs": [1]}))
    assert [t.architecture for t in Study(spec).trials()] == [plugins.TINY_ARCH]
    from workers.models import create_model

    assert create_model(plugins.TINY_ARCH, input_shape=(8, 8, 3), num_classes=2).output_shape == (None, 2)


# Runs in a subprocess: a Ray cluster of its own (ray.cluster_utils) whose worker node offers the plug-in's "NPU"
# resource and simulates its device, every worker registering the plug-ins (Ray's worker_process_setup_hook).
_NPU_SCRIPT = r"""
import json, sys
import ray
from ray.cluster_utils import Cluster
from tests.support import plugins

plugins.register_all()
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
cluster.add_node(num_cpus=1, resources={"NPU": 1}, env_vars={"SKINLESION_SIMULATED_DEVICE": "npu"})
ray.init(address=cluster.address, runtime_env={"worker_process_setup_hook": plugins.register_all})
from orchestrator.spec.schema import parse_spec
from orchestrator.study import Study

study = Study(parse_spec(json.loads(sys.argv[1])), address=cluster.address)
plan = study.plan()
result = study.run(show_progress=False, notify=lambda line: None)
run_info = json.loads(result.store.get_text(result.paths.run_info))
report = result.store.get_text(result.paths.run_info.rsplit("/", 1)[0] + "/report/index.html")
print("RESULT " + json.dumps({"plan": plan.estimate["rows"], "records": [r.to_dict() for r in result.records],
                              "probes": run_info["device_probes"], "report": report}, default=str))
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
def test_new_device_kind_runs_a_trial_with_plan_device_check_and_report(tmp_path):
    spec = tiny_spec_dict(store=str(tmp_path / "store"), dataset={"source": plugins.TINY_SOURCE, "image_size": [16, 16]},
                          grid={"architectures": [plugins.TINY_ARCH], "epochs": [1], "node_types": ["npu"]})
    env = {k: v for k, v in os.environ.items() if k not in ("SKINLESION_SIMULATED_DEVICE", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _NPU_SCRIPT, json.dumps(spec)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(lines[-1][len("RESULT "):])

    assert result["plan"][0]["node_type"] == "npu" and "no figure for tiny_dense on npu" in \
        result["plan"][0]["throughput_source"]
    probe = result["probes"][0]
    assert probe["node_type"] == "npu" and probe["ok"] and probe["expected_kind"] == "npu" and probe["simulated"] == "npu"
    record = result["records"][0]
    assert record["status"] == "completed", record.get("error")
    assert record["device"]["expected_kind"] == "npu" and record["device"]["simulated"] == "npu"
    assert record["device"]["used"]["kind"] == "cpu"  # simulated: the CPU computed, and the record says so
    assert "npu" in result["report"]

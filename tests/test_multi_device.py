"""Several devices per trial: data parallel training over all of them, global batch checks, device probes.

JAX on the CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` stands in for a 4-accelerator node:
XLA reads the flag when JAX initialises, so those runs happen in a subprocess of their own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.spec.schema import SpecError, parse_spec
from tests.conftest import tiny_spec_dict

ROOT = Path(__file__).resolve().parents[1]
FOUR_GPU = {"gpu4": {"resources": {"CPU": 1, "GPU": 4}, "framework": "jax"}}

# Runs in the subprocess: one whole trial on the 4-GPU node type, and one training step of the same model and
# global batch on one device and on four.
_SCRIPT = r"""
import json, sys
import numpy as np
from orchestrator.spec.grid import expand_grid
from orchestrator.spec.schema import parse_spec
from workers.data import prepare_data
from workers.distribution import data_parallel, plan_devices
from workers.train import build_model, compile_model, run_trial

trial = expand_grid(parse_spec(json.loads(sys.argv[1])))[0]
record = run_trial(trial).record.to_dict()
import keras

data = prepare_data(*trial.preparation_args())
x, y = data.x_train[:16], data.y_train[:16]
losses = {}
for name, resources in (("one", {"CPU": 1}), ("four", trial.resources)):
    plan = plan_devices(keras, "jax", "cpu", resources, 16)
    keras.utils.set_random_seed(0)
    with data_parallel(keras, plan):
        model = build_model(keras, trial, tuple(x.shape[1:]), data.num_classes)
        compile_model(keras, trial, model, plan)
        loss = float(model.train_on_batch(x, y)[0])
        placed = len(model.trainable_variables[0].value.sharding.device_set)
        losses[name] = {"devices": plan.count, "loss": loss, "weights_on": placed}
print("RESULT " + json.dumps({"record": record, "losses": losses}, default=str))
"""


@pytest.fixture(scope="module")
def four_device_run(tmp_path_factory):
    pytest.importorskip("jax")
    spec = tiny_spec_dict(node_types=FOUR_GPU, grid={"architectures": ["cnn"], "epochs": [2], "node_types": ["gpu4"]},
                          training={"batch_size": 16})
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", KERAS_BACKEND="jax",
               JAX_PLATFORMS="cpu", SKINLESION_SIMULATED_DEVICE="gpu")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(spec)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_data_parallel_trial_trains_over_all_four_devices(four_device_run):
    record = four_device_run["record"]
    assert record["status"] == "completed", record.get("error")
    device = record["device"]
    assert device["devices_used"] == 4 and device["data_parallel"] is True
    assert device["device_names"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert device["global_batch"] == 16 and device["per_device_batch"] == 16 // 4
    assert device["simulated"] == "gpu" and device["backend"] == "jax"
    assert device["steps_per_execution"] == 1 and device["jit_compile"] is True
    assert record["data"]["n_train"] % 4 == 0 and len(record["history"]) == 2
    assert 0 <= record["metrics"]["accuracy"] <= 1


@pytest.mark.slow
def test_data_parallel_step_gives_the_single_device_loss(four_device_run):
    losses = four_device_run["losses"]
    assert losses["one"]["devices"] == 1 and losses["four"]["devices"] == 4
    assert losses["one"]["weights_on"] == 1 and losses["four"]["weights_on"] == 4  # replicated over the mesh
    assert losses["four"]["loss"] == pytest.approx(losses["one"]["loss"], rel=1e-4, abs=1e-5)


def test_multi_device_batch_that_does_not_divide_is_one_line_error():
    spec = tiny_spec_dict(node_types=FOUR_GPU, grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["gpu4"]},
                          training={"batch_size": 30})
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    message = str(err.value)
    assert "\n" not in message and message.startswith("<spec>: training.batch_size: 30 does not divide by the 4")
    assert "'gpu4'" in message and "multiple of 4" in message
    parse_spec({**spec, "training": {"batch_size": 32}})  # a multiple of 4 is fine


def test_multi_device_torch_is_refused_at_validation():
    spec = tiny_spec_dict(node_types=FOUR_GPU, training={"batch_size": 32},
                          grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["gpu4"], "frameworks": ["torch"]})
    with pytest.raises(SpecError, match=r"grid.frameworks: torch trains on one device, but node type 'gpu4' gives 4"):
        parse_spec(spec)


def test_multi_device_cli_refuses_bad_batch_with_exit_2(tmp_path, capsys):
    import yaml

    from orchestrator.cli import main

    spec = tiny_spec_dict(store=str(tmp_path / "store"), node_types=FOUR_GPU, training={"batch_size": 6},
                          grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["gpu4"]})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["submit", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training.batch_size: 6 does not divide by the 4" in err
    assert not (tmp_path / "store").exists()


# Runs in the subprocess: a Ray cluster of its own (ray.cluster_utils) with a head, a "gpu" node that advertises a
# GPU the backends cannot see, and a "gpusim" node that simulates its GPU like infra/local_cluster.sh's gpu node.
_PROBE_SCRIPT = r"""
import json, sys
import ray
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"node_kind_head": 1}})
cluster.add_node(num_cpus=1, num_gpus=1, resources={"node_kind_gpu": 1})
cluster.add_node(num_cpus=1, num_gpus=1, resources={"node_kind_gpusim": 1},
                 env_vars={"SKINLESION_SIMULATED_DEVICE": "gpu"})
ray.init(address=cluster.address)
from orchestrator.execution.study_runner import StudyError, execute_study
from orchestrator.spec.schema import parse_spec

spec = parse_spec(json.loads(sys.argv[1]))
lines = []
try:
    execute_study(spec, address=cluster.address, show_progress=False, notify=lines.append, strict=True)
    strict = None
except StudyError as err:
    strict = str(err)
outcome = execute_study(spec, address=cluster.address, show_progress=False, notify=lines.append)
run_info = json.loads(outcome.store.get_text(outcome.paths.run_info))
print("RESULT " + json.dumps({"strict": strict, "lines": lines, "records": [r.to_dict() for r in outcome.records],
                              "probes": run_info["device_probes"]}, default=str))
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
def test_multi_device_probe_marks_gpu_node_without_gpu_misconfigured(tmp_path):
    node_types = {"gpu": {"resources": {"CPU": 1, "GPU": 1}, "framework": "auto"},
                  "gpusim": {"resources": {"CPU": 1, "GPU": 1}, "framework": "tensorflow"}}
    spec = tiny_spec_dict(store=str(tmp_path / "store"), node_types=node_types,
                          grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["gpu", "gpusim"]})
    from workers.accelerators import ACCELERATORS

    # a gpu node's probe must see this process's devices, not the isolation a cpu trial run here left behind
    isolation = {name for kind in ACCELERATORS.entries() for name in kind.isolation_env}
    env = {k: v for k, v in os.environ.items() if k not in {"SKINLESION_SIMULATED_DEVICE", "RAY_ADDRESS", *isolation}}
    proc = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT, json.dumps(spec)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(lines[-1][len("RESULT "):])

    assert result["strict"] and "failed the device probe (--strict)" in result["strict"]
    probes = {p["node_type"]: p for p in result["probes"]}
    assert probes["gpu"]["ok"] is False and probes["gpu"]["kind"] == "cpu" and not probes["gpu"]["simulated"]
    assert "asks for a gpu" in probes["gpu"]["error"]
    assert probes["gpusim"]["ok"] is True and probes["gpusim"]["simulated"] == "gpu"
    assert probes["gpusim"]["backend"] == "tensorflow"
    records = {r["config"]["node_type"]: r for r in result["records"]}
    gpu = records["gpu"]
    assert gpu["status"] == "misconfigured" and "device probe of node type 'gpu' failed" in gpu["error"]
    assert not gpu.get("metrics") and not gpu.get("device")  # never started
    assert records["gpusim"]["status"] == "completed" and records["gpusim"]["device"]["simulated"] == "gpu"
    console = "\n".join(result["lines"])
    assert "Device probe gpu / auto: FAILED" in console and "Device probe gpusim / tensorflow: ok" in console


def test_multi_device_probe_results_name_trials_and_header_lines():
    from orchestrator.execution.device_probe import misconfigured_trials, probe_summary, probe_targets
    from orchestrator.spec.grid import expand_grid

    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [1, 2], "node_types": ["cpu", "gpu"]}))
    trials = expand_grid(spec)
    assert sorted(probe_targets(trials)) == [("cpu", "jax"), ("gpu", "jax")]  # one backend for the study
    probes = [
        {"node_type": "cpu", "framework": "jax", "ok": True, "status": "ok", "backend": "jax",
         "kind": "cpu", "count": 2, "names": ["Xeon", "Xeon"], "simulated": None, "error": None},
        {"node_type": "gpu", "framework": "jax", "ok": False, "status": "ok", "error": "backend 'jax' sees no gpu"},
    ]
    bad = misconfigured_trials(trials, probes)
    assert sorted(bad) == sorted(t.trial_id for t in trials if t.node_type == "gpu")
    assert all("backend 'jax' sees no gpu" in reason for reason in bad.values())
    assert probe_summary(probes[0]) == "cpu / jax: ok - jax sees 2 cpu: Xeon"
    assert probe_summary(probes[1]) == "gpu / jax: FAILED - backend 'jax' sees no gpu"


def test_a_state_api_that_does_not_answer_leaves_the_probes_waiting_note_out(monkeypatch):
    """Ray's ``list_tasks`` retries for about 40 s when the cluster has no reachable dashboard; the probes' waiting
    note gives up after ``STATE_QUERY_S`` and says nothing, and a prompt answer is counted."""
    import threading
    from types import SimpleNamespace

    import ray.util.state

    from orchestrator.execution import device_probe

    released = threading.Event()
    pending = SimpleNamespace(task_id="ab12")

    def late_list_tasks(**_):
        released.wait(30)  # answers only once the caller has moved on (or after 30 s)
        return [pending]

    monkeypatch.setattr(device_probe, "STATE_QUERY_S", 0.2)
    monkeypatch.setattr(ray.util.state, "list_tasks", late_list_tasks)
    refs = [SimpleNamespace(task_id=lambda: SimpleNamespace(hex=lambda: "ab12"))]
    try:
        assert device_probe._waiting_for_a_node(refs) == 0
    finally:
        released.set()
    monkeypatch.setattr(ray.util.state, "list_tasks", lambda **_: [pending])
    assert device_probe._waiting_for_a_node(refs) == 1

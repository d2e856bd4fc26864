"""Heterogeneous cluster execution: `ray up` config, KubeRay manifest, node kinds, Ray Jobs submission, and the
local heterogeneous cluster (infra/local_cluster.sh) that tests/test_cluster_trust.py runs studies on.

``running_local_cluster`` starts its OWN multi-node Ray cluster in subprocesses (own temp dir, own free ports, own
auth token); the tests talk to it only over HTTP (CLI, JobSubmissionClient, dashboard API) and never call
ray.init, so it coexists with the embedded Ray other tests of the session use.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_spec_dict
from tests.support.tune_trials import study_trial

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = ROOT / "infra" / "local_cluster.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- ray-cluster.yaml
@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())


def test_ray_cluster_yaml_validates_against_rays_schema(cluster_config):
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster_config, schema)  # the file as written
    validate_config(prepare_config(copy.deepcopy(cluster_config)))  # as `ray up` fills and checks it
    assert cluster_config["provider"]["type"] == "gcp"


def test_ray_cluster_yaml_node_types(cluster_config):
    from ray._private.accelerators import TPUAcceleratorManager, tpu

    types = cluster_config["available_node_types"]
    assert {"cpu", "gpu", "tpu"} <= set(types)
    head = types[cluster_config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "trials must not run on the head"
    for name in ("cpu", "gpu", "tpu"):
        nt = types[name]
        assert nt["resources"][f"node_kind_{name}"] == 1
        assert nt["min_workers"] == 0 and nt["max_workers"] >= 1
    assert types["gpu"]["resources"]["GPU"] >= 1
    gpu_cfg = types["gpu"]["node_config"]
    assert gpu_cfg["guestAccelerators"][0]["acceleratorCount"] == types["gpu"]["resources"]["GPU"]
    assert gpu_cfg["scheduling"]["onHostMaintenance"] == "TERMINATE"
    for name in ("head", "cpu", "gpu"):
        assert "machineType" in types[name]["node_config"]
    tpu_cfg = types["tpu"]["node_config"]
    assert "machineType" not in tpu_cfg and tpu_cfg["runtimeVersion"]
    acc = tpu_cfg["acceleratorType"]
    assert TPUAcceleratorManager.is_valid_tpu_accelerator_type(acc)
    chips = int(acc.split("-")[1]) // tpu.get_tpu_cores_per_chip(acc)
    assert chips <= tpu.get_num_tpu_visible_chips_per_host(acc), "the tpu type must be a single-host TPU VM"
    assert types["tpu"]["resources"]["TPU"] == chips
    assert cluster_config["idle_timeout_minutes"] > 0


def test_ray_cluster_yaml_installs_package_and_exposes_nothing(cluster_config):
    from ray.autoscaler._private.util import prepare_config

    text = (ROOT / "ray-cluster.yaml").read_text()
    assert cluster_config["file_mounts"]["~/skinlesion"] == "."
    full = prepare_config(copy.deepcopy(cluster_config))
    for name, nt in full["available_node_types"].items():
        commands = nt.get("worker_setup_commands") or full["worker_setup_commands"]
        if name == full["head_node_type"]:
            commands = full["head_setup_commands"]
        assert any("pip install" in c and "$HOME/skinlesion" in c for c in commands), name
        assert any("RAY_AUTH_MODE" in c for c in commands), name
    head_start = " ".join(full["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--num-cpus=0" in head_start
    # no firewall rule, no open source range, no dashboard/GCS port published anywhere
    lowered = text.lower()
    assert "firewall" not in lowered.replace("no firewall rule", "")
    assert "0.0.0.0/0" not in text and "sourceRanges" not in text
    assert "--dashboard-host=0.0.0.0" not in text
    assert "ray dashboard ray-cluster.yaml" in text  # the SSH tunnel is documented


def test_default_node_types_are_feasible_on_the_autoscaler(cluster_config):
    from orchestrator.cluster.nodes import feasibility_nodes
    from orchestrator.spec.node_types import autoscaler_node_types, infeasibility_reason, placement_request
    from orchestrator.spec.schema import default_node_types

    nodes = feasibility_nodes([], cluster_config)  # a cluster scaled to zero: only the autoscaler's types
    assert {n.name for n in nodes} == {f"autoscaler:{n.name}" for n in autoscaler_node_types(cluster_config)}
    for name, nt in default_node_types().items():
        for exclusive in (False, True):
            req = placement_request(nt.resources, name, nodes, exclusive=exclusive)
            assert infeasibility_reason(req, nodes) is None, (name, exclusive, req)
    fpga = placement_request({"CPU": 1, "FPGA": 1}, "fpga", nodes)
    assert "FPGA" in infeasibility_reason(fpga, nodes)


# ----------------------------------------------------------------------------------------------------- KubeRay
def test_kuberay_manifest_has_cpu_gpu_tpu_groups():
    docs = [d for d in yaml.safe_load_all((ROOT / "infra" / "kuberay-raycluster.yaml").read_text()) if d]
    rc = next(d for d in docs if d.get("kind") == "RayCluster")
    assert rc["apiVersion"] == "ray.io/v1"
    spec = rc["spec"]
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu", "tpu"}
    for name, g in groups.items():
        custom = json.loads(json.loads(g["rayStartParams"]["resources"]))  # KubeRay's quoted-JSON form
        assert custom[f"node_kind_{name}"] == 1
        assert g["minReplicas"] == 0 and g["maxReplicas"] >= 1
        container = g["template"]["spec"]["containers"][0]
        assert "skinlesion-orchestrator" in container["image"]
        assert any(e["name"] == "RAY_AUTH_MODE" for e in container["env"])
    gpu = groups["gpu"]["template"]["spec"]
    assert gpu["nodeSelector"]["cloud.google.com/gke-accelerator"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    tpu = groups["tpu"]["template"]["spec"]
    assert tpu["nodeSelector"]["cloud.google.com/gke-tpu-accelerator"]
    assert tpu["nodeSelector"]["cloud.google.com/gke-tpu-topology"]
    chips = int(tpu["containers"][0]["resources"]["limits"]["google.com/tpu"])
    dims = [int(x) for x in tpu["nodeSelector"]["cloud.google.com/gke-tpu-topology"].split("x")]
    assert chips == dims[0] * dims[1] * (dims[2] if len(dims) > 2 else 1)
    assert json.loads(json.loads(groups["tpu"]["rayStartParams"]["resources"]))["TPU"] == chips


def test_dockerfile_builds_on_ray_and_installs_the_package():
    text = (ROOT / "infra" / "Dockerfile").read_text()
    assert re.search(r"^ARG RAY_IMAGE=rayproject/ray:", text, re.M) and "FROM ${RAY_IMAGE}" in text
    assert "pip install --no-cache-dir ." in text
    ignore = (ROOT / "infra" / "Dockerfile.dockerignore").read_text().split()
    assert {".git", "results", ".env", ".aws"} <= set(ignore)


# ------------------------------------------------------------------------------------------ node kinds (pure)
def test_exclusive_request_adds_the_whole_node_kind():
    from orchestrator.spec.node_types import NodeCapacity, exclusive_request, infeasibility_reason

    req = exclusive_request({"CPU": 1, "GPU": 1}, "gpu")
    assert req == {"CPU": 1.0, "GPU": 1.0, "node_kind_gpu": 1.0}
    node = NodeCapacity("g", {"CPU": 8, "GPU": 4, "node_kind_gpu": 1})
    assert infeasibility_reason(req, [node]) is None
    # two exclusive trials cannot fit one node at once: together they want 2 units of a resource it has once
    assert req["node_kind_gpu"] * 2 > node.resources["node_kind_gpu"]
    assert exclusive_request({"CPU": 1}, "cpu") == {"CPU": 1.0, "node_kind_cpu": 1.0}


def test_placement_request_pins_only_where_the_cluster_labels_node_kinds():
    from orchestrator.spec.node_types import (NodeCapacity, advertised_node_kinds, exclusive_unenforceable,
                                         placement_request)

    labelled = [NodeCapacity("c", {"CPU": 4, "node_kind_cpu": 1}), NodeCapacity("g", {"CPU": 4, "GPU": 1, "node_kind_gpu": 1})]
    plain = [NodeCapacity("local", {"CPU": 2})]
    assert advertised_node_kinds(labelled) == {"cpu", "gpu"}
    assert placement_request({"CPU": 1}, "cpu", labelled) == {"CPU": 1.0, "node_kind_cpu": 0.001}
    assert placement_request({"CPU": 1}, "cpu", labelled, exclusive=True)["node_kind_cpu"] == 1.0
    assert placement_request({"CPU": 1}, "cpu", plain, exclusive=True) == {"CPU": 1.0}
    assert exclusive_unenforceable(["cpu", "gpu", "tpu"], labelled) == ["tpu"]


def test_feasibility_nodes_reads_the_head_bootstrap_config(tmp_path, monkeypatch, cluster_config):
    from orchestrator.cluster.nodes import feasibility_nodes
    from orchestrator.spec.node_types import NodeCapacity, load_cluster_config

    path = tmp_path / "boot.yaml"
    path.write_text(yaml.safe_dump(cluster_config))
    monkeypatch.setenv("SKINLESION_CLUSTER_CONFIG", str(path))
    live = [NodeCapacity("head", {"node_kind_head": 1})]
    names = {n.name for n in feasibility_nodes(live)}
    assert {"head", "autoscaler:gpu", "autoscaler:tpu"} <= names
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: text\n")
    with pytest.raises(ValueError, match="not a Ray cluster config"):
        load_cluster_config(str(bad))


# ----------------------------------------------------------------------------------------------- jobs (pure)
def test_entrypoint_and_store_mapping(tmp_path):
    from orchestrator.cluster import jobs

    entry = jobs.build_entrypoint("_submitted/my spec.yaml", "/data/results", strict=True, run_id="r1")
    assert entry == ("orchestrator submit '_submitted/my spec.yaml' --local-driver --address auto --yes "
                     "--store /data/results --run-id r1 --strict")
    assert jobs.build_entrypoint("s.yaml", None, False) == "orchestrator submit s.yaml --local-driver --address auto --yes"
    notes: list[str] = []
    assert jobs.remote_store(None, "s3://bucket/prefix", False, notes.append) is None
    assert jobs.remote_store("s3://b/p", "results", False, notes.append) == "s3://b/p"
    assert jobs.remote_store(None, "results", True, notes.append) == str(Path("results").resolve())
    assert jobs.remote_store(None, "results", False, notes.append) == "~/results"
    assert notes and "head node" in notes[-1]


def test_auth_token_is_sent_to_loopback_only(tmp_path, monkeypatch):
    from orchestrator.cluster import jobs

    token = tmp_path / "token"
    token.write_text("abc123\n")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert jobs.auth_headers("http://127.0.0.1:8265") == {"Authorization": "Bearer abc123"}
    assert jobs.auth_headers("http://10.1.2.3:8265") == {}
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert jobs.auth_headers("http://10.1.2.3:8265") == {"Authorization": "Bearer abc123"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert jobs.auth_headers("http://127.0.0.1:8265") == {}


def test_upload_leaves_out_results_git_and_credentials(tmp_path):
    from orchestrator.cluster import jobs

    repo = tmp_path / "repo"
    (repo / "orchestrator").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "skinlesion-orchestrator"\n')
    (repo / "orchestrator" / "x.py").write_text("")
    for junk in ("results/a.json", ".git/config", ".env", ".aws/credentials", "orchestrator/__pycache__/x.pyc"):
        (repo / junk).parent.mkdir(parents=True, exist_ok=True)
        (repo / junk).write_text("secret")
    (repo / "experiments").mkdir()
    (repo / "experiments" / "s.yaml").write_text("name: s\n")
    assert jobs.find_working_dir(repo / "orchestrator") == repo
    with jobs.staged_upload(repo, repo / "experiments" / "s.yaml") as (upload, rel):
        assert upload == repo and rel == "experiments/s.yaml"  # inside: referred to in place, nothing copied
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("name: s\n")
    with jobs.staged_upload(repo, outside) as (upload, rel):
        assert rel == "_submitted/elsewhere.yaml" and (upload / rel).read_text() == "name: s\n"
        assert (upload / "orchestrator" / "x.py").exists()
        for junk in ("results", ".git", ".env", ".aws", "orchestrator/__pycache__"):
            assert not (upload / junk).exists(), junk
    assert not upload.exists()
    with jobs.staged_upload(None, outside) as (upload, rel):  # no checkout: the spec alone travels
        assert sorted(p.relative_to(upload).as_posix() for p in upload.rglob("*")) == ["_submitted", rel]
    if not any((d / "pyproject.toml").exists() for d in (Path.home(), *Path.home().parents)):
        assert jobs.find_working_dir(Path.home()) is None  # a home directory is never uploaded wholesale
    assert {".git", "results", ".env", ".aws"} <= set(jobs.UPLOAD_EXCLUDES)


def test_unreachable_cluster_is_one_clear_line_exit_1(capsys):
    from orchestrator.cli import main

    port = _free_port()
    for argv in (["list"], ["list", "--json"], ["status", "some-job"], ["logs", "some-job"], ["cancel", "some-job"],
                 ["dashboard"]):
        assert main(argv + ["--address", f"http://127.0.0.1:{port}"]) == 1
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith("error: no Ray cluster answers") and f"127.0.0.1:{port}" in err
        assert "Traceback" not in err and captured.out == ""
    assert main(["list", "--address", "ray://10.0.0.1:10001"]) == 2
    assert "Ray Client address" in capsys.readouterr().err


def test_metrics_callback_records_epochs_and_finished_trials(monkeypatch):
    from types import SimpleNamespace

    from orchestrator.execution import metrics_export
    from orchestrator.execution.metrics_export import MetricsExportCallback
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import parse_spec

    recorded: list[tuple] = []

    class _Metric:
        def __init__(self, name, description="", tag_keys=()):
            self.name, self.tag_keys = name, tag_keys

        def set(self, value, tags=None):
            assert set(tags) == set(self.tag_keys)
            recorded.append((self.name, "set", value, tags))

        def inc(self, value=1.0, tags=None):
            assert set(tags) == set(self.tag_keys)
            recorded.append((self.name, "inc", value, tags))

    backend = SimpleNamespace(Gauge=_Metric, Counter=_Metric)
    trials = [SimpleNamespace(trial_id="t1", node_type="gpu", epochs=4)]
    monkeypatch.setattr(metrics_export, "_ray_metrics", lambda: backend)  # Ray's metrics module, recorded
    cb = MetricsExportCallback("exp", "run1", trials)
    trial = study_trial(expand_grid(parse_spec(tiny_spec_dict()))[0].replace(trial_id="t1"), "tune_00000")
    cb.on_trial_result(1, [], trial, {"epoch": 2, "val_accuracy": 0.75, "loss": float("nan")})
    cb.on_trial_result(3, [], trial, {"done": True, "record": "{}"})
    cb.on_trial_complete(3, [], trial)
    cb.on_trial_complete(3, [], trial)  # counted once
    by_name = {}
    for name, op, value, tags in recorded:
        by_name.setdefault(name, []).append((op, value, tags))
    assert ("set", 2.0) in [(op, v) for op, v, _ in by_name["skinlesion_trial_epoch"]]
    assert by_name["skinlesion_trial_progress"][0][1] == 0.5 and by_name["skinlesion_trial_progress"][-1][1] == 1.0
    assert [t["metric"] for _, _, t in by_name["skinlesion_trial_metric"]] == ["val_accuracy"]  # NaN skipped
    assert [(op, v, t["status"]) for op, v, t in by_name["skinlesion_trials_finished"]] == [("inc", 1.0, "completed")]
    assert by_name["skinlesion_trial_epoch"][0][2]["trial"] == "t1"


# ------------------------------------------------------------------------- local heterogeneous cluster (e2e)
def _cluster_env(lc_dir: str, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH_TOKEN"))}
    env.pop("SKINLESION_SIMULATED_DEVICE", None)
    env.update({
        "LC_DIR": lc_dir, "LC_GCS_PORT": str(ports["gcs"]), "LC_DASHBOARD_PORT": str(ports["dashboard"]),
        "LC_CLIENT_PORT": str(ports["client"]), "LC_AUTH_TOKEN_PATH": os.path.join(lc_dir, "auth_token"),
        "SKINLESION_CACHE": os.path.join(lc_dir, "cache"), "RAY_USAGE_STATS_ENABLED": "0",
    })
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@contextmanager
def running_local_cluster(**settings: str):
    """infra/local_cluster.sh up in a short private temp dir with free ports (``settings``: more LC_* variables,
    e.g. LC_CPU_NODES="2"); always torn down."""
    lc_dir = tempfile.mkdtemp(prefix="lc-", dir="/tmp")  # short: Ray's Unix socket paths are length-limited
    ports = {"gcs": _free_port(), "dashboard": _free_port(), "client": _free_port()}
    env = {**_cluster_env(lc_dir, ports), **settings}
    try:
        up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=240)
        assert up.returncode == 0, f"local cluster did not start:\n{up.stdout}\n{up.stderr}"
        token = Path(env["LC_AUTH_TOKEN_PATH"]).read_text().strip()
        yield {"url": f"http://127.0.0.1:{ports['dashboard']}", "env": env, "dir": lc_dir,
               "headers": {"Authorization": f"Bearer {token}"}}
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(lc_dir, ignore_errors=True)


def _orchestrator(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    client_env = {k: v for k, v in env.items() if not k.startswith("LC_")}
    client_env["RAY_AUTH_TOKEN_PATH"] = env["LC_AUTH_TOKEN_PATH"]
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=client_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _get(url: str, headers: dict, timeout: float = 10):
    import requests

    r = requests.get(url, headers=headers, timeout=timeout)
    r.raise_for_status()
    return r


def test_log_tail_leaves_out_framework_noise():
    from orchestrator.cluster import jobs

    logs = "\n".join([
        "2026-01-01 10:00:00.123456: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "E0000 00:00:1 cuda_dnn.cc:8310] Unable to register cuDNN factory",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.",
        "Run 20260101-100000-abcd: 3 trials (0 not runnable here), store /s",
        "Queue: waiting for resources: 1 trial(s) need CPU=1, TPU=1",
        "Queue: running (1 trial(s) running, 0 waiting)",
        "error: dataset.path: '/data/x' does not exist",
    ])
    assert jobs.log_tail(logs) == ["Run 20260101-100000-abcd: 3 trials (0 not runnable here), store /s",
                                   "Queue: waiting for resources: 1 trial(s) need CPU=1, TPU=1",
                                   "Queue: running (1 trial(s) running, 0 waiting)",
                                   "error: dataset.path: '/data/x' does not exist"]
    assert jobs.build_resume_entrypoint("exp/r1", "/abs/store") == \
        "orchestrator resume exp/r1 --address auto --store /abs/store"


def test_resource_watch_fails_trials_no_node_can_run_any_more_and_ends_the_study(tmp_path):
    from types import SimpleNamespace

    from orchestrator.execution.recorder import TrialRecorder
    from orchestrator.execution.resource_watch import ResourceWatch, WatchStopper
    from orchestrator.run_store import RunPaths
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.node_types import NodeCapacity
    from orchestrator.spec.schema import parse_spec
    from workers.storage import open_store

    spec = parse_spec(tiny_spec_dict(grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu", "gpu"]}))
    trials = {t.node_type: t for t in expand_grid(spec)}
    store, paths = open_store(str(tmp_path)), RunPaths("tiny", "r1")
    recorder = TrialRecorder(store, paths, {t.trial_id: t for t in trials.values()})
    recorder.attempt_nodes[trials["gpu"].trial_id] = ["ab" * 28]
    nodes = [NodeCapacity("cpu", {"CPU": 1}), NodeCapacity("gpu", {"CPU": 1, "GPU": 1})]
    said: list[str] = []
    queued = []
    clock = [100.0]
    watch = ResourceWatch(recorder, lambda: nodes, timeout_s=10, notify=said.append, on_queue=queued.append)
    stopper = WatchStopper(watch)
    running = study_trial(trials["cpu"], "t1", status="RUNNING")
    waiting = study_trial(trials["gpu"], "t2", status="PENDING")
    watch.check([running, waiting], clock[0])
    assert said == []  # trials run: nothing to say
    assert [q.describe() for q in queued] == ["running (1 trial(s) running, 1 waiting)"]  # run.json knows
    running.status = "PENDING"  # e.g. another study holds the nodes
    watch.check([running, waiting], clock[0])
    clock[0] += 16
    watch.check([running, waiting], clock[0])
    assert said == ["Queue: waiting for resources: 2 trial(s) need CPU=1 | CPU=1, GPU=1"]
    assert queued[-1].state == "waiting" and queued[-1].waiting == 2 and queued[-1].needs == ["CPU=1", "CPU=1, GPU=1"]
    running.status = "RUNNING"
    watch.check([running, waiting], clock[0])
    assert said[-1] == "Queue: running (1 trial(s) running, 1 waiting)"
    assert queued[-1].describe() == "running (1 trial(s) running, 1 waiting)" and len(queued) == 3  # changes only
    del nodes[1]  # the only gpu node is lost
    watch.check([running, waiting], clock[0])
    clock[0] += 11
    watch.check([running, waiting], clock[0])
    assert not stopper.stop_all()  # the cpu trial still runs
    record = json.loads(store.get_text(paths.trial(trials["gpu"].trial_id, "record.json")))
    assert record["status"] == "failed" and "no node of type 'gpu' is left" in record["error"]
    assert record["node_id"] == "ab" * 28 and record["device"]["expected_kind"] == "gpu"
    running.status = "TERMINATED"
    clock[0] += 1
    watch.check([running, waiting], clock[0])
    assert stopper.stop_all()

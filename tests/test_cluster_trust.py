"""Cluster runs a user can trust (issue 19), on ONE local heterogeneous cluster (infra/local_cluster.sh with two
cpu nodes, a simulated gpu and a simulated tpu node) shared by the tests of this module, in this order:

0. a study over cpu, gpu, tpu and an fpga no node has, submitted through Ray Jobs: each trial on its node kind
   (simulated devices say so), the fpga trial infeasible; ``list`` / ``status`` / ``logs`` / ``cancel`` and the
   dashboard's job and node APIs; study metrics reach the head node's Prometheus endpoint
1. the quick start's node types with their default frameworks run without a failed trial; trial actors are named
   by trial in Ray's views; trials_sharing_node counts per node (not per IP); two studies that need the same
   prepared data run at once; a study waiting for a busy node says so in ``status``/``list``; run.json and the
   report name the cluster address and the submitted commit
2. a remote submission's dataset path is checked on the cluster (the job fails in seconds, ``status`` prints the
   log tail as lines); ``--strict`` refuses before creating a job; a failed trial's record has its node and device
3. cancel, then ``orchestrator resume RUN --address http://...`` continues the run in the same store
4. node loss: a lost cpu node's trial resumes from its checkpoint on the other cpu node; losing the only gpu node
   fails its trials with the reason and the study ends (last: it stops nodes)

The tests talk to the cluster over HTTP and subprocesses only (no ray.init here).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_spec_dict
from tests.test_cluster import CLUSTER_SCRIPT, ROOT, _get, _orchestrator, running_local_cluster

pytestmark = [pytest.mark.slow, pytest.mark.alone]


@pytest.fixture(scope="module")
def cluster():
    with running_local_cluster(LC_CPU_NODES="2") as running:
        yield running


def _write_spec(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _submit(cluster, spec_file: Path, *extra: str) -> str:
    sub = _orchestrator(["submit", str(spec_file), "--address", cluster["url"], *extra], cluster["env"])
    assert sub.returncode == 0, sub.stdout + sub.stderr
    return re.search(r"Submitted job (\S+)", sub.stdout).group(1)


def _wait(cluster, job_id: str, timeout: int = 480) -> subprocess.CompletedProcess:
    return _orchestrator(["status", job_id, "--wait", "--timeout", str(timeout), "--address", cluster["url"]],
                         cluster["env"], timeout=timeout + 60)


def _logs(cluster, job_id: str) -> str:
    return _orchestrator(["logs", job_id, "--address", cluster["url"]], cluster["env"]).stdout


def _records(store: Path, experiment: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in store.glob(f"{experiment}/*/trials/*/record.json")}


def _run_info(store: Path, experiment: str) -> dict:
    (path,) = store.glob(f"{experiment}/*/run.json")
    return json.loads(path.read_text())


def _node_kinds(cluster) -> dict[str, str]:
    nodes = _get(f"{cluster['url']}/api/v0/nodes?detail=1&limit=100", cluster["headers"]).json()["data"]["result"]["result"]
    return {n["node_id"]: next((k[len("node_kind_"):] for k in n["resources_total"] if k.startswith("node_kind_")), "?")
            for n in nodes}


def _actors(cluster, class_name: str) -> list[dict]:
    reply = _get(f"{cluster['url']}/api/v0/actors?detail=1&limit=10000", cluster["headers"]).json()
    return [a for a in reply["data"]["result"]["result"] if a.get("class_name") == class_name]


def _node_ids_by_name(lc_dir: str) -> dict[str, str]:
    """Node name (cpu, cpu2, gpu, tpu) -> Ray node id, from the raylets' command lines (--node_id, temp dir)."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith("raylet"):
            continue
        line = " ".join(argv)
        node_id = re.search(r"--node_id=([0-9a-f]+)", line)
        name = re.search(re.escape(f"{lc_dir}/ray/") + r"([a-z0-9]+)/", line)
        if node_id and name:
            out[name.group(1)] = node_id.group(1)
    return out


def test_study_runs_on_local_heterogeneous_cluster_through_ray_jobs(cluster, tmp_path):
    from ray.job_submission import JobSubmissionClient

    url, env, headers = cluster["url"], cluster["env"], cluster["headers"]
    store = tmp_path / "store"
    spec = tiny_spec_dict(
        name="hetero", store=str(store),
        grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu", "gpu", "tpu", "fpga"],
              "frameworks": ["tensorflow"]},
        # cpu is pinned to cpu nodes (node_kind_cpu): with plain {"CPU": 1} it could land on the gpu/tpu nodes,
        # which also have CPUs. gpu/tpu need GPU/TPU, which only their own nodes offer.
        node_types={"cpu": {"resources": {"CPU": 1, "node_kind_cpu": 0.001}},
                    "fpga": {"resources": {"CPU": 1, "FPGA": 1}}},
    )
    spec_file = tmp_path / "hetero.yaml"
    spec_file.write_text(yaml.safe_dump(spec))

    sub = _orchestrator(["submit", str(spec_file), "--address", url], env)
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job_id, run_id = re.search(r"Submitted job (\S+) to \S+ \(run (\S+)\)", sub.stdout).groups()

    # A second, concurrent job on the same cluster exports study metrics from the head node's driver.
    client = JobSubmissionClient(url, headers=headers)
    metrics_code = ("import ray, time; ray.init(address='auto'); from orchestrator.execution.metrics_export import TrialMetrics; "
                    "m = TrialMetrics('hetero', 'probe'); m.epoch('t-probe', 1, total_epochs=2, node_type='gpu', "
                    "metrics={'val_accuracy': 0.5}); m.finish('t-done', 'completed'); time.sleep(45)")
    metrics_job = client.submit_job(entrypoint=f'python -c "{metrics_code}"',
                                    runtime_env={"working_dir": str(ROOT), "excludes": ["results", ".git"]})

    listed = _orchestrator(["list", "--address", url], env)
    assert listed.returncode == 0 and job_id in listed.stdout and metrics_job in listed.stdout, listed.stdout
    assert run_id in listed.stdout, listed.stdout  # the run id is known from submission on
    listed = _orchestrator(["list", "--address", url, "--json"], env)
    assert listed.returncode == 0, listed.stderr
    by_id = {j["job_id"]: j for j in json.loads(listed.stdout)["jobs"]}
    assert by_id[job_id]["experiment"] == "hetero" and metrics_job in by_id

    jobs_api = _get(f"{url}/api/jobs/", headers).json()
    assert job_id in {j.get("submission_id") for j in jobs_api}
    assert next(j for j in jobs_api if j.get("submission_id") == job_id)["metadata"]["experiment"] == "hetero"

    # Ray metrics of the study reach the head node's Prometheus endpoint.
    summary = _get(f"{url}/nodes?view=summary", headers).json()["data"]["summary"]
    head = next(n for n in summary if any("InternalHead" in k or "internal_head" in k
                                          for k in n["raylet"].get("resourcesTotal", {})))
    metrics_url = f"http://127.0.0.1:{head['raylet']['metricsExportPort']}/metrics"
    deadline, text = time.monotonic() + 90, ""
    while time.monotonic() < deadline and "ray_skinlesion_trial_epoch{" not in text:
        time.sleep(3)
        try:
            text = _get(metrics_url, {}).text
        except Exception:
            text = ""
    assert 'trial="t-probe"' in text and "ray_skinlesion_trials_finished_total{" in text, text[-2000:]

    status = _orchestrator(["status", job_id, "--wait", "--timeout", "420", "--address", url], env, timeout=480)
    logs = _orchestrator(["logs", job_id, "--address", url], env)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout, status.stdout + status.stderr + logs.stdout[-4000:]
    status_json = json.loads(_orchestrator(["status", job_id, "--json", "--address", url], env).stdout)
    assert status_json["status"] == "SUCCEEDED" and status_json["experiment"] == "hetero"
    assert "completed: 3" in logs.stdout and "infeasible: 1" in logs.stdout, logs.stdout[-4000:]
    # status reads the run's state from its run.json in the store, not from the log
    assert re.search(rf"run: +{run_id} \(finished \(completed: 3, infeasible: 1\)\)", status.stdout), status.stdout

    # Which node is which: the dashboard's node list with each node's node_kind resource.
    nodes = _get(f"{url}/api/v0/nodes?detail=1&limit=100", headers).json()["data"]["result"]["result"]
    kind_of = {n["node_id"]: next((k[len("node_kind_"):] for k in n["resources_total"] if k.startswith("node_kind_")), None)
               for n in nodes}
    assert sorted(kind_of.values()) == ["cpu", "cpu", "gpu", "head", "tpu"]

    records = [json.loads(p.read_text()) for p in store.glob(f"hetero/{run_id}/trials/*/record.json")]
    by_type = {r["config"]["node_type"]: r for r in records}
    assert set(by_type) == {"cpu", "gpu", "tpu", "fpga"}, [r["trial_id"] for r in records]
    for node_type in ("cpu", "gpu", "tpu"):
        r = by_type[node_type]
        assert r["status"] == "completed", r
        assert kind_of[r["node_id"]] == node_type, (node_type, r["node_id"], kind_of)
        simulated = r["device"]["simulated"]
        assert simulated == (None if node_type == "cpu" else node_type), r["device"]
        assert r["device"]["used"]["kind"] == "cpu"  # nothing here really has a GPU or TPU, and it says so
    fpga = by_type["fpga"]
    assert fpga["status"] == "infeasible" and "FPGA" in fpga["error"], fpga

    cancel = _orchestrator(["cancel", metrics_job, "--address", url], env)
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr


def test_quick_start_node_types_run_named_counted_and_queued(cluster, tmp_path):
    from ray.job_submission import JobSubmissionClient

    from orchestrator.cluster.jobs import git_commit

    url, env = cluster["url"], cluster["env"]
    store = tmp_path / "store"
    client = JobSubmissionClient(url, headers=cluster["headers"])
    # Another user's job holds the tpu node (its CPU and TPU), so study B has to wait for it.
    blocker = client.submit_job(entrypoint="python -c 'import time; time.sleep(90)'", entrypoint_num_cpus=1,
                                entrypoint_resources={"TPU": 1})
    deadline = time.monotonic() + 60
    while client.get_job_status(blocker).value != "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    # The quick start's node types as they are (no overrides): cpu (tensorflow), gpu (auto), tpu (jax).
    # A and B need the same prepared data and are submitted together.
    spec_a = tiny_spec_dict(name="qs_a", store=str(store), grid={"architectures": ["cnn"], "epochs": [2],
                                                                 "node_types": ["cpu", "gpu"]})
    spec_b = tiny_spec_dict(name="qs_b", store=str(store), grid={"architectures": ["cnn"], "epochs": [2],
                                                                 "node_types": ["tpu"]})
    job_a, job_b = _submit(cluster, _write_spec(tmp_path, spec_a)), _submit(cluster, _write_spec(tmp_path, spec_b))

    waiting_status = waiting_list = ""
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not (waiting_status and waiting_list):
        time.sleep(3)
        status = _orchestrator(["status", job_b, "--address", url], env).stdout
        if "waiting for resources" in status:
            waiting_status = status
            listed = _orchestrator(["list", "--address", url], env).stdout
            waiting_list = listed if "waiting for resources" in listed else ""
    client.stop_job(blocker)
    assert "RUNNING" in waiting_status and "waiting for resources" in waiting_status, _logs(cluster, job_b)[-3000:]
    assert job_b[:12] in waiting_list, waiting_list

    for job in (job_a, job_b):
        done = _wait(cluster, job)
        assert done.returncode == 0 and "SUCCEEDED" in done.stdout, done.stdout + _logs(cluster, job)[-4000:]

    kinds = _node_kinds(cluster)
    records = {**_records(store, "qs_a"), **_records(store, "qs_b")}
    assert len(records) == 3
    for tid, r in records.items():
        assert r["status"] == "completed", (tid, r.get("error"))  # no failed or misconfigured trial (item 1)
        assert kinds[r["node_id"]] == r["config"]["node_type"], r["config"]["node_type"]
        assert r["attempt_nodes"] == [r["node_id"]] and r["retries"] == 0
        # each node runs one trial at a time; nodes of this cluster share one IP address (item 2)
        assert r["trials_sharing_node"] == 1, r
    tpu = next(r for r in records.values() if r["config"]["node_type"] == "tpu")
    assert tpu["config"]["framework"] == "jax" and tpu["device"]["simulated"] == "tpu"

    # Ray's views name each trial actor by its trial (item 7): the class by study, the actor by trial id.
    named = {a["repr_name"] for a in _actors(cluster, "qs_a_trial")}
    assert named == set(_records(store, "qs_a")), named

    # Both studies prepared (or reused) the same data and finished (shared preparation is harmless).
    caches = [_run_info(store, name)["data_cache"] for name in ("qs_a", "qs_b")]
    assert set(caches[0]) == set(caches[1]) and len(caches[0]) == 1

    # run.json and the report say where the study ran and which commit was submitted (item 9).
    info = _run_info(store, "qs_a")
    assert info["address"] == url
    commit = git_commit(ROOT)
    assert commit and info["environment"]["git_commit"] == commit
    (report,) = store.glob("qs_a/*/report/index.html")
    html = report.read_text()
    assert url in html and commit in html


def test_remote_inputs_are_checked_on_the_cluster_strict_refuses_and_failures_are_located(cluster, tmp_path):
    url, env = cluster["url"], cluster["env"]
    store = tmp_path / "store"
    # A path that exists on no machine here: the submitting machine does not check it; the job does, at once.
    missing = tiny_spec_dict(name="elsewhere", store=str(store))
    missing["dataset"] = {"source": "isic_folder", "path": "/data/isic-9class-not-here", "image_size": [16, 16]}
    job = _submit(cluster, _write_spec(tmp_path, missing))
    # A trial that fails on a node, submitted at once so both jobs run together: its record names the node and
    # the device it asked for (item 8).
    broken = tiny_spec_dict(name="broken", store=str(store), models={"cnn": {"params": {"filters": -3}}},
                            execution={"max_retries": 0})
    broken_job = _submit(cluster, _write_spec(tmp_path, broken))
    status = _wait(cluster, job, timeout=180)
    assert status.returncode == 1 and "FAILED" in status.stdout, status.stdout
    tail = status.stdout.split("log tail:", 1)[1].splitlines()
    assert any(ln.strip().startswith("error: dataset.path") and "/data/isic-9class-not-here" in ln for ln in tail), tail
    assert not any(re.search(r"tensorflow/|oneDNN|absl::", ln) for ln in tail), tail
    started, ended = (re.search(rf"{key}:\s+(\S+ \S+)", status.stdout).group(1) for key in ("started", "ended"))
    assert (time.mktime(time.strptime(ended, "%Y-%m-%d %H:%M:%S"))
            - time.mktime(time.strptime(started, "%Y-%m-%d %H:%M:%S"))) < 90

    # --strict: an fpga node type no node and no autoscaler type offers is refused before a job exists.
    before = _orchestrator(["list", "--address", url], env).stdout.count("fpga_study")
    strict = tiny_spec_dict(name="fpga_study", store=str(store), grid={"architectures": ["cnn"], "epochs": [1],
                                                                       "node_types": ["cpu", "fpga"]},
                            node_types={"fpga": {"resources": {"CPU": 1, "FPGA": 1}}})
    refused = _orchestrator(["submit", str(_write_spec(tmp_path, strict)), "--address", url, "--strict"], env)
    assert refused.returncode == 2 and "cannot run on the cluster" in refused.stderr and "FPGA" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Submitted job" not in refused.stdout
    assert _orchestrator(["list", "--address", url], env).stdout.count("fpga_study") == before == 0

    assert "FAILED" in _wait(cluster, broken_job).stdout
    (record,) = _records(store, "broken").values()
    assert record["status"] == "failed" and record["error"]
    assert _node_kinds(cluster)[record["node_id"]] == "cpu" and record["attempt_nodes"] == [record["node_id"]]
    assert record["device"]["requested"] == "cpu" and record["device"]["expected_kind"] == "cpu"


def test_cancelled_run_resumes_on_the_cluster_through_the_documented_command(cluster, tmp_path):
    url, env = cluster["url"], cluster["env"]
    store = tmp_path / "store"
    spec = tiny_spec_dict(name="resumable", store=str(store), grid={"architectures": ["cnn"], "epochs": [1, 40]})
    job = _submit(cluster, _write_spec(tmp_path, spec))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not _records(store, "resumable"):
        time.sleep(2)
    (first,) = _records(store, "resumable").values()  # the 1-epoch trial; the 40-epoch one is still running
    first_file = next(store.glob(f"resumable/*/trials/{first['trial_id']}/record.json"))
    first_bytes = first_file.read_bytes()
    cancel = _orchestrator(["cancel", job, "--address", url], env)
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    command = re.search(r"(orchestrator resume \S+ --store \S+ --address \S+)", cancel.stdout).group(1).split()
    assert command[2] == _run_info(store, "resumable")["run_id"] and command[-1] == url
    _wait(cluster, job, timeout=120)

    resumed = _orchestrator(command[1:], env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    resume_job = re.search(r"Submitted job (\S+)", resumed.stdout).group(1)
    done = _wait(cluster, resume_job)
    assert done.returncode == 0, done.stdout + _logs(cluster, resume_job)[-4000:]
    records = _records(store, "resumable")
    assert {r["status"] for r in records.values()} == {"completed"} and len(records) == 2
    assert first_file.read_bytes() == first_bytes  # kept, not recomputed
    assert len(_run_info(store, "resumable")["resumed"]) == 1


def test_lost_nodes_resume_elsewhere_or_end_the_study_with_a_reason(cluster, tmp_path):
    from ray.job_submission import JobSubmissionClient

    url, env, lc_dir = cluster["url"], cluster["env"], cluster["dir"]
    store = tmp_path / "store"
    spec = tiny_spec_dict(name="nodeloss", store=str(store),
                          grid={"architectures": ["cnn"], "epochs": [6], "node_types": ["cpu", "gpu"], "repeats": 2},
                          models={"cnn": {"params": {"seconds": 4}}},
                          execution={"max_retries": 1, "cpus_per_trial": 1, "lost_node_timeout_s": 15})
    spec_file = _write_spec(tmp_path, spec)
    # The product's study driver with a trainable that sleeps per epoch (checkpointing like the real one).
    code = ("import sys; from orchestrator import Study; from tests.support.trainables import slow_epochs_trainable; "
            f"r = Study.from_file({str(spec_file)!r}, address='auto', trainable=slow_epochs_trainable)"
            ".run(show_progress=False); print('counts', r.counts); sys.exit(0)")
    client = JobSubmissionClient(url, headers=cluster["headers"])
    job = client.submit_job(entrypoint=f'python -c "{code}"',
                            runtime_env={"working_dir": str(ROOT), "excludes": ["results", ".git"]})
    names = _node_ids_by_name(lc_dir)
    assert {"cpu", "cpu2", "gpu"} <= set(names), names
    deadline, busy = time.monotonic() + 300, set()
    while time.monotonic() < deadline and not {names["cpu"], names["cpu2"], names["gpu"]} <= busy:
        time.sleep(2)
        busy = {a["node_id"] for a in _actors(cluster, "nodeloss_trial") if a["state"] == "ALIVE"}
    assert {names["cpu"], names["cpu2"], names["gpu"]} <= busy, (busy, names)
    while time.monotonic() < deadline and len({c.parent for c in store.glob("nodeloss/*/tune/*/checkpoint_*")}) < 3:
        time.sleep(1)  # until each running trial has finished an epoch (and stored its checkpoint)
    for node in ("cpu2", "gpu"):
        stop = subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop-node", node], env=env, capture_output=True,
                              text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr

    deadline = time.monotonic() + 480
    while time.monotonic() < deadline and client.get_job_status(job).value not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(3)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job).value == "SUCCEEDED", logs[-4000:]
    records = _records(store, "nodeloss")
    cpu = [r for r in records.values() if r["config"]["node_type"] == "cpu"]
    gpu = [r for r in records.values() if r["config"]["node_type"] == "gpu"]
    assert len(cpu) == 2 and len(gpu) == 2
    moved = next(r for r in cpu if r["attempt_nodes"][0] == names["cpu2"])
    stayed = next(r for r in cpu if r is not moved)
    assert moved["status"] == "completed" and moved["retries"] == 1, moved
    assert moved["attempt_nodes"] == [names["cpu2"], names["cpu"]] and moved["resumed_from_checkpoint"]
    assert [h["epoch"] for h in moved["history"]] == [1, 2, 3, 4, 5, 6]  # nothing recomputed
    assert {h["node"] for h in moved["history"]} == {names["cpu2"], names["cpu"]}
    assert stayed["status"] == "completed" and stayed["retries"] == 0 and stayed["attempt_nodes"] == [names["cpu"]]
    assert [h["epoch"] for h in stayed["history"]] == [1, 2, 3, 4, 5, 6]
    for r in gpu:
        assert r["status"] == "failed" and "no node of type 'gpu' is left" in r["error"], r
    html = next(store.glob("nodeloss/*/report/index.html")).read_text()
    assert f"completed after 1 retry (nodes {names['cpu2'][:8]} -&gt; {names['cpu'][:8]})" in html or \
        f"completed after 1 retry (nodes {names['cpu2'][:8]} -> {names['cpu'][:8]})" in html

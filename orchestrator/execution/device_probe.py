"""Pre-flight device probe: before any trial starts, one short Ray task per (node type, framework) on a live
node of that type checks that the backend imports and sees the device kind the node type asks for.

The probe runs with exactly the trial's placement request (node-kind pinning, GPUs/TPU chips), so Ray gives it
the devices a trial would get; the check itself is ``workers.device.probe_devices``. Node types no live node can
serve (the autoscaler would have to start one) are not waited on: their trials check the device themselves
(``workers.device.device_problem``). A probe that does not answer within the time limit counts as not probed.

On a single-machine (embedded) run, CPU-only node types with a named backend are checked in this process
without importing the backend (``local_cpu_probe``: it is installed, the device is this machine's CPU), which
saves a fresh worker importing a framework (seconds); a trial whose backend then fails records its own error.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Callable

from orchestrator.run_store import QueueState
from orchestrator.spec.node_types import NodeCapacity, infeasibility_reason, resource_request
from workers.config import TrialConfig
from workers.device import NOT_PROBED, probe_summary
from workers.error_text import last_line
from workers.settings import simulated_device

PROBE_TIMEOUT_S = 120.0
WAITING_NOTE_S = 5.0  # after this long, probes Ray has not placed yet are reported as waiting for resources


@dataclass
class ProbeOutcome:
    """What the probes found, and the trials of failing node types with the reason."""

    probes: list[dict] = field(default_factory=list)
    misconfigured: dict[str, str] = field(default_factory=dict)  # trial_id -> reason


def probe_targets(trials: list[TrialConfig]) -> dict[tuple[str, str], TrialConfig]:
    """One representative trial per (node type, framework), in trial order."""
    out: dict[tuple[str, str], TrialConfig] = {}
    for trial in trials:
        out.setdefault((trial.node_type, trial.framework), trial)
    return out


def _remote_probe(trial: TrialConfig):
    """The probe as a Ray task with the trial's own resource request, in a fresh worker (``max_calls=1``: the
    framework it imports, and any accelerator memory it holds, go away with the process)."""
    import ray

    from workers.device import probe_devices

    req = resource_request(trial.resources)
    task = ray.remote(max_calls=1, max_retries=0)(probe_devices).options(
        num_cpus=min(req.pop("cpu"), 1.0), num_gpus=req.pop("gpu"), resources=req or None)
    return task.remote(trial.node_type, trial.framework, trial.resources, trial.allow_device_mismatch)


def _wait_all(refs: list, timeout_s: float, notify: Callable[[str], None] | None,
              on_queue: Callable[[QueueState], None] | None = None) -> list:
    """The probes that finished within ``timeout_s``; after a few seconds without all of them, one line says that
    the study waits for resources (other studies may hold the nodes)."""
    import ray

    first = min(WAITING_NOTE_S, timeout_s)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=first)
    if len(ready) < len(refs) and timeout_s > first:
        waiting = _waiting_for_a_node([r for r in refs if r not in ready])
        if waiting:
            queue = QueueState(state="waiting", waiting=waiting, of="device probes")
            if notify:
                notify(queue.console_line())
            if on_queue:
                on_queue(queue)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s - first)
    return ready


STATE_QUERY_S = 5.0  # the longest the probes wait for Ray's state API to say which of them wait for a node


def _waiting_for_a_node(refs: list) -> int:
    """How many of the probe tasks ``refs`` Ray has not placed on a node yet (their resources are taken); 0 when
    Ray's state API does not answer within ``STATE_QUERY_S``. The API needs the cluster's dashboard: without
    one (or with its port taken by another Ray on the machine) ``list_tasks`` retries for about 40 s whatever its
    own ``timeout``, so it is asked in a daemon thread that is left behind when it is late."""
    import threading

    from ray.util.state import list_tasks

    ids, found = {ref.task_id().hex() for ref in refs}, []

    def query() -> None:
        try:
            found.append(list_tasks(filters=[("state", "=", "PENDING_NODE_ASSIGNMENT")], timeout=STATE_QUERY_S,
                                    raise_on_missing_output=False))
        except Exception:  # noqa: BLE001 - no state API: nothing is said
            pass

    thread = threading.Thread(target=query, name="probe-state-query", daemon=True)
    thread.start()
    thread.join(STATE_QUERY_S)
    return sum(1 for t in found[0] if t.task_id in ids) if found else 0


def local_cpu_probe(trial: TrialConfig) -> dict | None:
    """The probe of a CPU-only trial on this machine, without importing its backend; None when the trial asks for
    an accelerator, a simulated device or ``auto`` (those need the real probe)."""
    from workers.device import BACKEND_MODULES, expected_kind, installed

    if (expected_kind(trial.resources) != "cpu" or trial.framework not in BACKEND_MODULES
            or simulated_device()):
        return None
    out = {"node_type": trial.node_type, "framework": trial.framework, "backend": trial.framework,
           "expected_kind": "cpu", "kind": "cpu", "count": 1, "names": [platform.processor() or platform.machine()],
           "simulated": None, "host": platform.node(), "in_process": True, "status": "ok"}
    if not installed(trial.framework):
        return out | {"ok": False, "error": f"framework '{trial.framework}' is not installed on this node"}
    return out | {"ok": True, "error": None}


def run_probes(trials: list[TrialConfig], live: list[NodeCapacity], timeout_s: float = PROBE_TIMEOUT_S,
               notify: Callable[[str], None] | None = None, single_machine: bool = False,
               on_queue: Callable[[QueueState], None] | None = None) -> list[dict]:
    """Probe every (node type, framework) of ``trials`` that a live node can serve; the rest are ``not probed``.
    Needs ``ray.init``. Every probe is bounded by ``timeout_s`` (all run at once); probes that wait for a node
    are said (``notify``) and passed on as the run's queue state (``on_queue``). ``single_machine``: Ray runs
    on this machine only, so CPU-only node types are checked in this process (``local_cpu_probe``)."""
    import ray

    results: dict[tuple[str, str], dict] = {}
    refs = {}
    for key, trial in probe_targets(trials).items():
        local = local_cpu_probe(trial) if single_machine else None
        if local is not None:
            results[key] = local
        elif infeasibility_reason(trial.resources, live) is not None:
            results[key] = _not_probed(key, "no live node of this type yet; each trial checks its device itself")
        else:
            refs[key] = _remote_probe(trial)
    ready = _wait_all(list(refs.values()), timeout_s, notify, on_queue) if refs else []
    for key, ref in refs.items():
        if ref in ready:
            try:
                results[key] = ray.get(ref) | {"status": "ok"}
            except Exception as err:  # the task itself died (worker crash, import of workers failed)
                results[key] = _failed(key, f"probe task failed: {last_line(err)}")
        else:
            ray.cancel(ref, force=True)
            results[key] = _not_probed(key, f"the probe did not finish within {timeout_s:g} s")
    return [results[key] for key in probe_targets(trials)]


def _not_probed(key: tuple[str, str], why: str) -> dict:
    return {"node_type": key[0], "framework": key[1], "ok": None, "status": NOT_PROBED, "error": None, "note": why}


def _failed(key: tuple[str, str], error: str) -> dict:
    return {"node_type": key[0], "framework": key[1], "ok": False, "status": "ok", "error": error}


def misconfigured_trials(trials: list[TrialConfig], probes: list[dict]) -> dict[str, str]:
    """trial_id -> reason for every trial whose (node type, framework) probe failed."""
    failed = {(p["node_type"], p["framework"]): p["error"] for p in probes if p.get("ok") is False}
    return {t.trial_id: f"device probe of node type '{t.node_type}' failed: {failed[(t.node_type, t.framework)]}"
            for t in trials if (t.node_type, t.framework) in failed}


def preflight(trials: list[TrialConfig], live: list[NodeCapacity], notify: Callable[[str], None] = print,
              timeout_s: float = PROBE_TIMEOUT_S, single_machine: bool = False,
              on_queue: Callable[[QueueState], None] | None = None) -> ProbeOutcome:
    """Probe the node types of ``trials``, say what was found, and name the trials of node types that failed.
    Needs ``ray.init``; ``single_machine`` as for ``run_probes``."""
    if not trials:
        return ProbeOutcome()
    probes = run_probes(trials, live, timeout_s, notify, single_machine, on_queue)
    for probe in probes:
        notify("Device probe " + probe_summary(probe))
    return ProbeOutcome(probes=probes, misconfigured=misconfigured_trials(trials, probes))

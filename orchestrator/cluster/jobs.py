"""Remote submission, listing, status, logs and cancel of studies through the Ray Jobs API.

``orchestrator submit FILE --address http://HEAD:8265`` uploads the working directory (the repository checkout
the command runs in, or the current directory) and the experiment file as the job's ``working_dir`` and starts
``orchestrator submit FILE --local-driver --address auto --run-id RUN_ID`` on the head node: the study's driver
runs on the cluster, so the laptop may disconnect. The run id is chosen here, at submission, and kept in the
job's metadata with the experiment and the store; the command returns at once with both ids. Several
submissions queue on the cluster's resources (each study driver waits for its trials' resources; Ray decides
who runs next) and each driver keeps its run's queue state in the store's run.json, which ``list_jobs`` /
``job_info`` callers read with ``run_info_of`` (no job log is read).

Nothing secret travels with a job: no environment variable of the submitting machine is forwarded (object
storage credentials come from the cluster's own environment or instance role), the upload leaves out
``.env``/``.aws``/key files, and the entrypoint and metadata hold only the experiment name, the store URI and
flags. A Ray authentication token, when one is needed, is sent as an HTTP header and never stored in the job.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import secrets
import subprocess
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

from orchestrator.errors import BadInput

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
PACKAGE_NAME = "skinlesion-orchestrator"
STAGED_SPEC_DIR = "_submitted"

# Left out of every upload (gitignore syntax, relative to the working directory). Ray also honours .gitignore
# and .rayignore files in the uploaded directory.
UPLOAD_EXCLUDES = [
    ".git", ".hg", "results", "results-*", "__pycache__", "*.pyc", ".pytest_cache", ".cache", ".mypy_cache",
    ".ruff_cache", ".ipynb_checkpoints", ".venv", "venv", "*.egg-info", "build", "dist", "benchmarks/_work",
    ".whl", "node_modules",
    # never ship credentials, whatever the .gitignore says
    ".env", ".env.*", ".aws", ".netrc", "*.pem", "*.key", "id_rsa*", "id_ed25519*",
]
# Settings every study driver wants; none of them comes from the submitting machine's environment.
JOB_ENV = {"PYTHONUNBUFFERED": "1", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
# Start-up noise of TensorFlow / XLA / absl in a driver's output, left out of the log tail ``status`` prints.
LOG_NOISE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
    r"To enable the following instructions|.*oneDNN custom operations|.*Unable to register cu(DNN|FFT|BLAS)|"
    r".*TF-TRT Warning|.*computation placer already registered|.*cuda_(dnn|fft|blas)\.cc)")


def _user_error(message: str) -> Exception:
    return BadInput(message)


def default_address() -> str:
    """``RAY_ADDRESS`` when it names a dashboard (http...), else the local default ``http://127.0.0.1:8265``."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    return env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS


def _is_loopback(address: str) -> bool:
    host = urlparse(address if "://" in address else f"http://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_token() -> str | None:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def auth_headers(address: str) -> dict[str, str]:
    """The Ray token header for a cluster that uses token authentication.

    Sent when ``RAY_AUTH_MODE=token`` or when the address is on this machine (a local cluster, or an SSH tunnel
    such as ``ray dashboard ray-cluster.yaml``); never to another host unless asked for with RAY_AUTH_MODE.
    """
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    if mode == "disabled" or not (mode == "token" or _is_loopback(address)):
        return {}
    token = _read_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _check_address(address: str) -> str:
    address = (address or "").strip().rstrip("/")
    if not address:
        raise _user_error("no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    if address.startswith("ray://"):
        raise _user_error(f"{address} is a Ray Client address; jobs are submitted to the dashboard "
                          "(http://HEAD:8265), or add --local-driver to drive the study from this machine")
    return address


def connect(address: str):
    """A ``JobSubmissionClient`` for ``address``, or one clear ``BadInput`` line when it cannot be reached."""
    address = _check_address(address)
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as err:  # pragma: no cover - ray[default] is a dependency
        raise _user_error(f"the Ray Jobs client is not installed ({err}); pip install 'ray[default]'") from None
    try:
        return JobSubmissionClient(address, headers=auth_headers(address))
    except Exception as err:  # connection refused, DNS, TLS, version mismatch, auth ...
        if _is_auth_error(err):
            raise _user_error(f"the Ray dashboard at {address} refused the request: {_one_line(err)}") from None
        from orchestrator.errors import ClusterUnreachable

        raise ClusterUnreachable(f"no Ray cluster answers at {address} ({_one_line(err)}); is the cluster up? "
                                 "For a `ray up` cluster open the tunnel first: ray dashboard ray-cluster.yaml") from None


def _is_auth_error(err: BaseException) -> bool:
    text = str(err)
    return type(err).__name__ == "AuthenticationError" or any(
        w in text for w in ("Authentication", "Unauthorized", "Forbidden"))


def _one_line(err: BaseException) -> str:
    if _is_auth_error(err):
        return ("the cluster uses token authentication and no valid token was sent (get the token on the head "
                "node with 'ray get-auth-token', put it in a file and set RAY_AUTH_TOKEN_PATH to it; for a "
                "non-local address also set RAY_AUTH_MODE=token)")
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


def _call(address: str, what: str, fn: Callable, *args):
    try:
        return fn(*args)
    except Exception as err:
        text = str(err)
        if "does not exist" in text or "404" in text:
            raise _user_error(f"job '{args[0] if args else '?'}' not found on {address} "
                              f"(see: orchestrator list --address {address})") from None
        raise _user_error(f"{what} failed on {address}: {_one_line(err)}") from None


# ----------------------------------------------------------------------------------------------- submission
def find_working_dir(start: Path | None = None) -> Path | None:
    """The directory a submission uploads as the job's working directory.

    The checkout of this project containing ``start`` (its pyproject.toml names the package), else ``start``
    itself, except the home directory or ``/`` (never uploaded wholesale): None then, and only the experiment
    file travels (the cluster's installed package runs it).
    """
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        try:
            if pyproject.is_file() and PACKAGE_NAME in pyproject.read_text():
                return folder
        except OSError:
            continue
    if start in (Path.home().resolve(), Path(start.anchor)):
        return None
    return start


def _ignore_for_copy(root: Path):
    import fnmatch

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).resolve().relative_to(root)
        out = set()
        for name in names:
            relname = (rel / name).as_posix()
            if any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(relname, pat) for pat in UPLOAD_EXCLUDES):
                out.add(name)
        return out

    return ignore


@contextmanager
def staged_upload(working_dir: Path | None, spec_path: Path | None) -> Iterator[tuple[Path, str | None]]:
    """(directory to upload, the spec's path relative to it).

    A spec inside the working directory is referred to where it is. One outside it (a file in /tmp, another
    checkout) is uploaded beside a temporary copy of the working directory, under ``_submitted/``; the user's
    own folders are never written to. Without a working directory only the spec is uploaded; without a spec
    (a resume) the working directory alone, or an empty one.
    """
    if spec_path is None and working_dir is not None:
        yield working_dir, None
        return
    if spec_path is None:
        with tempfile.TemporaryDirectory(prefix="orchestrator-job-") as tmp:
            yield Path(tmp), None
        return
    spec_path = spec_path.resolve()
    if working_dir is not None:
        try:
            rel = spec_path.relative_to(working_dir).as_posix()
        except ValueError:
            rel = None
        if rel is not None:
            yield working_dir, rel
            return
    with tempfile.TemporaryDirectory(prefix="orchestrator-job-") as tmp:
        staged = Path(tmp) / "wd"
        if working_dir is not None:
            shutil.copytree(working_dir, staged, ignore=_ignore_for_copy(working_dir), symlinks=True)
        staged.mkdir(exist_ok=True)
        (staged / STAGED_SPEC_DIR).mkdir(exist_ok=True)
        target = staged / STAGED_SPEC_DIR / spec_path.name
        shutil.copy2(spec_path, target)
        yield staged, f"{STAGED_SPEC_DIR}/{spec_path.name}"


def remote_store(store: str | None, spec_uri: str, head_is_local: bool, notify: Callable[[str], None]) -> str | None:
    """The ``--store`` the driver on the head node gets, or None to keep the spec's ``storage.uri``.

    Object storage URIs pass through. A directory is a directory on the head node: when the head node is this
    machine (a local cluster) a relative one is made absolute here, so the results land where the user looks;
    for a remote head a relative one goes under the head node's home directory (the job's working directory
    is temporary) and the user is told how to fetch it.
    """
    uri = store or spec_uri
    if "://" in uri:
        return store
    if head_is_local:
        return str(Path(uri).expanduser().resolve())
    remote = uri if uri.startswith(("/", "~")) else f"~/{uri}"
    notify(f"note: storage '{uri}' is a directory on the cluster's head node ({remote}); fetch results with "
           f"'ray rsync-down ray-cluster.yaml {remote} .', or use an s3:// store")
    return remote


def head_is_this_machine(client, address: str) -> bool:
    """Whether the cluster's head node runs on this machine (a local cluster rather than an SSH tunnel)."""
    if not _is_loopback(address):
        return False
    import socket

    try:
        summary = client._do_request("GET", "/nodes?view=summary").json()["data"]["summary"]
        for node in summary:
            if "node:__internal_head__" in (node.get("raylet") or {}).get("resourcesTotal", {}) or \
                    "node:InternalHead" in (node.get("raylet") or {}).get("resourcesTotal", {}):
                return node.get("hostname") == socket.gethostname()
    except Exception:
        pass
    return True


def new_submission_id(experiment: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{experiment}-{stamp}-{secrets.token_hex(2)}"


def build_entrypoint(spec_rel: str, store: str | None, strict: bool, run_id: str | None = None,
                     calibrate: bool = False) -> str:
    argv = ["orchestrator", "submit", spec_rel, "--local-driver", "--address", "auto", "--yes"]
    if calibrate:
        argv.append("--calibrate")
    if store:
        argv += ["--store", store]
    if run_id:
        argv += ["--run-id", run_id]
    if strict:
        argv.append("--strict")
    return shlex.join(argv)


def build_resume_entrypoint(run: str, store: str, endpoint_url: str | None = None) -> str:
    argv = ["orchestrator", "resume", run, "--address", "auto", "--store", store]
    if endpoint_url:
        argv += ["--endpoint-url", endpoint_url]
    return shlex.join(argv)


def git_commit(folder: Path | None) -> str | None:
    """The commit of the checkout ``folder`` is in (``+dirty`` with uncommitted changes), or None."""
    if folder is None:
        return None
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) if commit else None


def job_env(address: str, root: Path | None) -> dict[str, str]:
    """The driver's environment: ``JOB_ENV`` plus where the study was submitted and the commit of the uploaded
    checkout (its ``.git`` is not uploaded), read back by ``workers.settings`` for run.json and the report."""
    env = dict(JOB_ENV, SKINLESION_SUBMITTED_TO=address)
    commit = git_commit(root)
    if commit:
        env["SKINLESION_GIT_COMMIT"] = commit
    return env


def submit_job(spec_file: str, address: str, store: str | None = None, strict: bool = False, *,
               run_id: str, notify: Callable[[str], None] | None = None,
               working_dir: str | Path | None = None, calibrate: bool = False) -> str:
    """Submit a study to the cluster at ``address`` as a Ray Job that runs it as run ``run_id``; return the job's
    id at once (nothing waits).

    A ``run_id`` of an earlier run of the same file in the same store continues it (its finished trials are kept);
    ``calibrate`` has the job's driver calibrate on the cluster first (``submit --calibrate``).
    """
    from orchestrator.spec.schema import load_spec

    notify = notify or (lambda m: print(m, file=sys.stderr))
    address = _check_address(address)
    spec = load_spec(spec_file)
    root = _upload_root(working_dir, notify)
    client = connect(address)
    head_local = head_is_this_machine(client, address)
    store_arg = remote_store(store, spec.storage.uri, head_local, notify)
    if any(k.startswith("AWS_") for k in os.environ) and (store_arg or spec.storage.uri).startswith("s3://"):
        notify("note: AWS_* variables of this shell are not sent; the cluster reads the store with its own "
               "credentials (instance role or its environment)")
    metadata = {"experiment": spec.name, "run_id": run_id, "spec_file": Path(spec_file).name,
                **_store_metadata(store_arg or spec.storage.uri, spec.storage.endpoint_url, head_local)}
    with staged_upload(root, Path(spec_file)) as (upload_dir, spec_rel):
        return _submit(client, address, upload_dir, root, build_entrypoint(spec_rel, store_arg, strict, run_id, calibrate),
                       new_submission_id(spec.name), metadata)


def submit_resume_job(run: str, address: str, store: str, *, endpoint_url: str | None = None,
                      experiment: str | None = None, notify: Callable[[str], None] | None = None,
                      working_dir: str | Path | None = None) -> str:
    """Continue the stored run ``run`` on the cluster at ``address`` as a Ray Job (``orchestrator resume RUN
    --address auto`` on the head node, same store): its completed trials are kept, the others run. The run is
    looked up where the job runs, so a directory store on a remote head node works too."""
    notify = notify or (lambda m: print(m, file=sys.stderr))
    address = _check_address(address)
    root = _upload_root(working_dir, notify)
    client = connect(address)
    head_local = head_is_this_machine(client, address)
    store_arg = remote_store(store, store, head_local, notify) or store
    metadata = {"experiment": experiment or (run.split("/", 1)[0] if "/" in run else "resume"), "resumes": run,
                "run_id": run.rsplit("/", 1)[-1], **_store_metadata(store_arg, endpoint_url, head_local)}
    with staged_upload(root, None) as (upload_dir, _):
        return _submit(client, address, upload_dir, root, build_resume_entrypoint(run, store_arg, endpoint_url),
                       new_submission_id(metadata["experiment"]), metadata)


def _store_metadata(store: str, endpoint_url: str | None, head_local: bool) -> dict:
    """Where the run's store is, for reading its run.json back: the URI, the S3 endpoint, and whether it is a
    directory on a head node that is not this machine (then it cannot be read from here)."""
    meta = {"store": store}
    if endpoint_url:
        meta["endpoint_url"] = endpoint_url
    if "://" not in store and not head_local:
        meta["store_on"] = "head node"
    return meta


def _upload_root(working_dir: str | Path | None, notify: Callable[[str], None]) -> Path | None:
    root = Path(working_dir).resolve() if working_dir else find_working_dir()
    if root is None:
        notify("note: not inside a project checkout: only the experiment file is uploaded (the cluster's "
               "installed package runs it)")
    return root


def _submit(client, address: str, upload_dir: Path, root: Path | None, entrypoint: str, submission_id: str,
            metadata: dict) -> str:
    env = job_env(address, root)
    metadata = {**metadata, "submitted_by": "orchestrator", "submitted_to": address,
                "git_commit": env.get("SKINLESION_GIT_COMMIT", "unknown")}
    # Ray leaves .git out by itself (and warns when told to), the rest is ours.
    runtime_env = {"working_dir": str(upload_dir), "excludes": [p for p in UPLOAD_EXCLUDES if p != ".git"],
                   "env_vars": env}
    try:
        with _quiet_ray_upload_logs():
            return client.submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                     runtime_env=runtime_env, metadata=metadata)
    except Exception as err:
        raise _user_error(f"job submission to {address} failed: {_one_line(err)}") from None


def live_nodes(address: str):
    """The cluster's live nodes and their resources, read through its dashboard (no Ray connection), as
    ``NodeCapacity`` (what placement checks feasibility against)."""
    from orchestrator.spec.node_types import NodeCapacity

    client = connect(address)
    reply = _call(address, "listing the cluster's nodes", client._do_request, "GET",
                  "/api/v0/nodes?detail=1&limit=10000")
    try:
        nodes = reply.json()["data"]["result"]["result"]
    except (ValueError, KeyError, TypeError):
        raise _user_error(f"listing the cluster's nodes failed on {address}: unexpected reply "
                          f"({reply.status_code})") from None
    return [NodeCapacity(name=f"{n.get('node_ip', '?')}:{n['node_id'][:8]}", resources=dict(n.get("resources_total") or {}))
            for n in nodes if n.get("state") == "ALIVE"]


@contextmanager
def _quiet_ray_upload_logs():
    """Ray logs every packaging step at INFO; one submission line is enough."""
    import logging

    names = ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging",
             "ray._private.runtime_env.working_dir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# --------------------------------------------------------------------------------------------- the job queue
def status_name(status) -> str:
    return getattr(status, "value", str(status))


def list_jobs(address: str) -> list:
    """Every job on the cluster (queued, running and ended), oldest first (Ray's ``JobDetails``)."""
    client = connect(address)
    return sorted(_call(address, "listing jobs", client.list_jobs), key=lambda j: j.start_time or 0)


def job_info(address: str, job_id: str, *, wait: bool = False, timeout: float | None = None):
    """A job's ``JobInfo``; with ``wait`` once it has ended (a one-line error after ``timeout`` seconds)."""
    client = connect(address)
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        info = _call(address, "reading the job", client.get_job_info, job_id)
        status = status_name(info.status)
        if not wait or status in TERMINAL:
            return info
        if deadline and time.monotonic() > deadline:
            raise _user_error(f"job {job_id} is still {status} after {timeout:g}s")
        time.sleep(2)


def job_logs(address: str, job_id: str) -> str:
    """The driver output of a job so far."""
    return _call(address, "reading the logs", connect(address).get_job_logs, job_id)


def log_tail(logs: str, lines: int = 15) -> list[str]:
    """The last ``lines`` lines of a driver's output without TensorFlow/XLA start-up noise."""
    kept = [ln.rstrip() for ln in logs.splitlines() if ln.strip() and not LOG_NOISE.match(ln.strip())]
    return kept[-lines:]


def run_info_of(metadata: dict | None) -> dict | None:
    """The run.json of a submitted run, read from the store its job's metadata names (one small read, no log);
    None when there is none yet (the driver has not started the run) or it cannot be read from here (a directory
    on a remote head node, a store this machine has no access to, a job not submitted by ``orchestrator``)."""
    from orchestrator.run_store import RunPaths
    from orchestrator.runs import find_run
    from workers.storage import open_store

    meta = metadata or {}
    run_id, store_uri = meta.get("run_id"), meta.get("store")
    if not run_id or not store_uri or meta.get("store_on") == "head node":
        return None
    try:
        store = open_store(store_uri, endpoint_url=meta.get("endpoint_url"))
        paths = RunPaths(meta.get("experiment", ""), run_id)
        resumed = meta.get("resumes", "")
        if not store.exists(paths.run_info):
            if not resumed or "/" in resumed:
                return None
            paths = find_run(store, run_id)  # a resume whose experiment could not be read at submission
        return json.loads(store.get_text(paths.run_info))
    except Exception:
        return None


def follow_logs(address: str, job_id: str, write: Callable[[str], None]) -> str:
    """Stream a job's driver output to ``write`` until it ends; returns its final status."""
    import logging

    client = connect(address)
    _call(address, "reading the job", client.get_job_status, job_id)  # a clear error for a bad id

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    try:
        asyncio.run(follow())
    except Exception as err:
        raise _user_error(f"following the logs of {job_id} failed: {_one_line(err)}") from None
    return status_name(_call(address, "reading the job", client.get_job_status, job_id))


def cancel_job(address: str, job_id: str) -> tuple[str, bool]:
    """Stop a queued or running job; returns (its status before, whether a stop was requested)."""
    client = connect(address)
    status = status_name(_call(address, "reading the job", client.get_job_status, job_id))
    if status in TERMINAL:
        return status, False
    _call(address, "cancelling the job", client.stop_job, job_id)
    return status, True


def dashboard_url(address: str) -> str:
    """The dashboard URL for ``address`` (checked to answer)."""
    client = connect(address)
    return getattr(client, "_address", None) or address

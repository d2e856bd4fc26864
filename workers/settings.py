"""Every setting of the product's own that it reads from the environment, in one place. Variables of the tools it
drives are read where those are driven: Ray's (``RAY_ADDRESS``, ``RAY_AUTH_TOKEN[_PATH]``, ``RAY_AUTH_MODE`` in
``cluster/jobs.py``), MLflow's tracking URI (``tracking/study.py``), Keras's ``KERAS_BACKEND`` and the device
isolation variables (set, not read, in ``workers/device.py``).

| variable | read where | meaning |
| --- | --- | --- |
| ``SKINLESION_CACHE`` | every node | this node's disk cache (synthetic data, prepared data and weights fetched from
  a remote store); default ``~/.cache/skinlesion-orchestrator`` |
| ``SKINLESION_SIMULATED_DEVICE`` | worker nodes | set by ``infra/local_cluster.sh`` on nodes that only pretend to have
  an accelerator: their trials are marked ``simulated`` and not refused for computing on the CPU |
| ``SKINLESION_CLUSTER_CONFIG`` | the driver | a ``ray up`` config whose node types count as runnable (default
  ``~/ray_bootstrap_config.yaml`` on a head node) |
| ``SKINLESION_SUBMITTED_TO`` | the driver | set by ``orchestrator submit --address http://...`` on the job: the
  cluster address the study was submitted to (run.json ``address``, the report's "Cluster") |
| ``SKINLESION_GIT_COMMIT`` | the driver | set on the job: the commit of the uploaded checkout (which has no ``.git``) |
| ``ORCHESTRATOR_STORE`` | the CLI | default ``--store`` of ``resume``, ``report``, ``runs``, ``ensemble`` (default ``results``) |
| ``AWS_*``, ``AWS_ENDPOINT_URL[_S3]`` | every node | boto3's own credential chain and endpoint, never copied anywhere |
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """This node's disk cache."""
    return Path(os.environ.get("SKINLESION_CACHE") or Path.home() / ".cache" / "skinlesion-orchestrator")


def simulated_device() -> str | None:
    """The accelerator this node only simulates (local test cluster), or None."""
    return os.environ.get("SKINLESION_SIMULATED_DEVICE") or None


def cluster_config_path() -> str | None:
    """An explicitly named ``ray up`` config, or None."""
    return os.environ.get("SKINLESION_CLUSTER_CONFIG") or None


def submitted_to() -> str | None:
    """The cluster address a Ray Job's study was submitted to, or None outside such a job."""
    return os.environ.get("SKINLESION_SUBMITTED_TO") or None


def submitted_commit() -> str | None:
    """The git commit of the checkout a Ray Job uploaded, or None."""
    return os.environ.get("SKINLESION_GIT_COMMIT") or None


def default_store() -> str:
    """The store the CLI's run-reading commands use when ``--store`` is not given."""
    return os.environ.get("ORCHESTRATOR_STORE") or "results"


def s3_endpoint(explicit: str | None = None) -> str | None:
    """An S3 endpoint: the explicit one, else boto3's standard ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``."""
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None

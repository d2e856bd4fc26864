"""Joining a Ray cluster, or starting the embedded single-machine one, and leaving it cleanly."""
from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from urllib.parse import urlparse

from orchestrator.errors import StudyError

# Credentials Ray Tune would copy from the driver's environment into every trial actor's runtime_env, which
# Ray writes to its (world-readable) runtime_env_agent.log. Trials get them from their own environment instead:
# the embedded Ray's workers inherit the driver's, cluster nodes use their environment or instance role.
RUNTIME_ENV_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN",
                           "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME")
ADDRESS_TIMEOUT_S = 5.0


def check_address_reachable(address: str) -> None:
    """A ``host:port`` or ``ray://host:port`` address must answer within seconds; ``StudyError`` otherwise
    (Ray itself would retry for minutes). ``auto`` and ``local`` are Ray's to resolve."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise StudyError(f"--address: '{address}' is not host:port, ray://host:port, http://host:8265 or auto")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=ADDRESS_TIMEOUT_S):
            pass
    except OSError as err:
        raise StudyError(f"--address: nothing answers at {parsed.hostname}:{parsed.port} ({err.strerror or err}); "
                         "is the cluster up?") from None


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> str | None:
    """Join ``address`` or start an embedded local Ray (dashboard on 127.0.0.1); returns the dashboard URL.

    Ray 2.60's own GCS, raylet and worker gRPC servers listen on every interface whatever node address is given
    (Ray maps 127.0.0.1 to the machine's address); only the dashboard can be kept on loopback."""
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for noisy in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return _dashboard_url()
    kwargs: dict = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address:
        check_address_reachable(address)
        kwargs["address"] = address
    else:  # always a fresh single-machine Ray, never a cluster `ray start` left running here
        kwargs.update(address="local", include_dashboard=True, dashboard_host="127.0.0.1", num_cpus=num_cpus)
    url = getattr(ray.init(**kwargs), "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def _dashboard_url() -> str | None:
    try:
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url()
    except Exception:
        return None
    return f"http://{url}" if url and not url.startswith("http") else url


@contextmanager
def credentials_kept_out_of_runtime_env():
    """While Tune creates trial actors, the driver's cloud credentials are out of ``os.environ`` (Tune would copy
    them into each actor's runtime_env, which Ray logs); clients made before keep theirs."""
    saved = {k: os.environ.pop(k) for k in RUNTIME_ENV_CREDENTIALS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)

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
    (Ray maps 127.0.0.1 to the machine's address); only the dashboard can be kept on loopback, and an embedded
    Ray always starts with token authentication and a token of its own (``require_token_auth``)."""
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
        require_token_auth()
        kwargs.update(address="local", include_dashboard=True, dashboard_host="127.0.0.1", num_cpus=num_cpus)
    url = getattr(ray.init(**kwargs), "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


AUTH_MODE = "RAY_AUTH_MODE"
AUTH_TOKEN = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
_saved_auth_env: dict[str, str | None] | None = None


def require_token_auth() -> str:
    """Turn Ray's token authentication on for the embedded Ray about to start, whatever the environment says,
    with a token of this run only; returns the token file's path.

    Ray's GCS, raylet and workers listen on every interface; with ``RAY_AUTH_MODE=token`` each of them refuses a
    connection that does not carry the cluster's token. The token is written to a fresh folder only this user
    can enter (mode 0700, the file 0600) and named by ``RAY_AUTH_TOKEN_PATH`` (Ray's own setting), so it is
    neither the shared ``~/.ray/auth_token`` nor visible to other users; ``release_token_auth`` restores the
    environment and removes it when the embedded Ray ends. ``StudyError`` (one line) when Ray cannot be put in
    token mode."""
    import atexit
    import shutil
    import tempfile

    global _saved_auth_env
    try:
        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
        from ray._raylet import AuthenticationMode, AuthenticationTokenLoader, Config, get_authentication_mode
    except ImportError as err:
        raise StudyError(f"this Ray has no token authentication ({err}); install ray>=2.52 so the embedded Ray's "
                         "ports admit only this user's processes") from None
    if _saved_auth_env is None:
        _saved_auth_env = {k: os.environ.get(k) for k in (AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH)}
    folder = tempfile.mkdtemp(prefix="skinlesion-ray-auth-")  # mode 0700
    path = os.path.join(folder, "auth_token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(generate_new_authentication_token())
    atexit.register(shutil.rmtree, folder, True)
    os.environ.pop(AUTH_TOKEN, None)  # a token in the environment would win over this run's file
    os.environ[AUTH_TOKEN_PATH] = path
    os.environ[AUTH_MODE] = "token"
    Config.initialize("")  # Ray caches its settings per process: read the mode again
    AuthenticationTokenLoader.instance().reset_cache()
    if get_authentication_mode() != AuthenticationMode.TOKEN or not AuthenticationTokenLoader.instance().has_token():
        raise StudyError("Ray's token authentication could not be turned on for the embedded Ray (RAY_AUTH_MODE="
                         "token); refusing to start a Ray whose ports would admit anyone on the network")
    return path


def release_token_auth() -> None:
    """After the embedded Ray has shut down: its token file removed, the environment as it was before."""
    import shutil

    global _saved_auth_env
    path = os.environ.get(AUTH_TOKEN_PATH)
    if _saved_auth_env is None:
        return
    if path and os.path.basename(os.path.dirname(path)).startswith("skinlesion-ray-auth-"):
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    for key, value in _saved_auth_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_auth_env = None


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

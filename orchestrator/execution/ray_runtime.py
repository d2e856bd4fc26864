"""Joining a Ray cluster, or starting the embedded single-machine one."""
from __future__ import annotations

import logging
import os


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> str | None:
    """Join ``address`` or start an embedded local Ray with the dashboard on 127.0.0.1; returns its URL."""
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for noisy in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if not ray.is_initialized():
        kwargs: dict = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
        if address:
            kwargs["address"] = address
        else:  # always a fresh single-machine Ray, never a cluster `ray start` left running here
            kwargs.update(address="local", include_dashboard=True, dashboard_host="127.0.0.1", num_cpus=num_cpus)
        ctx = ray.init(**kwargs)
        url = getattr(ctx, "dashboard_url", None)
    else:
        url = _dashboard_url()
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return url


def _dashboard_url() -> str | None:
    try:
        from ray._private.worker import get_dashboard_url

        return get_dashboard_url()
    except Exception:
        return None

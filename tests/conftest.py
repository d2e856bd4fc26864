"""Shared fixtures: one Ray cluster per test process (session), a real S3 HTTP endpoint (moto server), tiny specs."""
from __future__ import annotations

import os
import socket
import tempfile

import pytest

# With several test processes (-n 2): file order and no slow test beside a module marked `alone`.
pytest_plugins = ["tests.support.machine"]

# Set before anything starts Ray, so every worker process inherits them.
_SESSION_TMP = tempfile.mkdtemp(prefix="skinlesion-tests-")
os.environ.setdefault("SKINLESION_CACHE", os.path.join(_SESSION_TMP, "cache"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# The session's Ray also offers 2 units of a custom resource that test node types use as a simulated accelerator
# (Ray's own override of a node's resources; CPU and GPU counts stay as given).
os.environ.setdefault("RAY_OVERRIDE_RESOURCES", '{"simulated_gpu": 2}')
SIMULATED_GPU = {"resources": {"CPU": 1, "simulated_gpu": 1}, "framework": "tensorflow", "price_per_hour": 2.48}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session():
    """One embedded local Ray (2 CPUs, 2 ``simulated_gpu``, dashboard on 127.0.0.1) shared by every test that needs
    Ray."""
    import ray

    from orchestrator.execution.ray_runtime import connect_ray

    url = connect_ray(None, num_cpus=2)
    yield url
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible HTTP endpoint (moto in server mode) on 127.0.0.1; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket on the S3 endpoint; yields its name."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def tiny_spec_dict(name: str = "tiny", store: str = "results", **overrides) -> dict:
    """A study small enough to run in seconds: 16x16 synthetic images, cnn, 1-2 epochs, cpu."""
    spec = {
        "name": name,
        "dataset": {"source": "synthetic", "image_size": [16, 16], "samples_per_class": 12},
        "split": {"test_fraction": 0.25, "val_fraction": 0.15, "seed": 0},
        "augmentation": {"augmentor": {"samples_per_class": 12}},
        "training": {"batch_size": 16},
        "grid": {"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu"]},
        "execution": {"max_retries": 1, "cpus_per_trial": 1},
        "storage": {"uri": store},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


@pytest.fixture
def tiny_spec(tmp_path):
    """Factory: ``tiny_spec(**overrides)`` -> validated ExperimentSpec storing under tmp_path."""
    from orchestrator.spec.schema import parse_spec

    def make(**overrides):
        overrides.setdefault("store", str(tmp_path / "store"))
        return parse_spec(tiny_spec_dict(**overrides))

    return make

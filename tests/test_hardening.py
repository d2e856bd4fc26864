"""Bad input through the command line: one line on stderr, exit 2, nothing started or written; and the
security and interruption guarantees (no credential in Ray's logs, Ctrl-C records nothing as failed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_spec_dict

REPO = Path(__file__).resolve().parents[1]
BOMB = "\n".join([
    "name: bomb", "grid: {architectures: [cnn], epochs: [1]}", "models:", "  cnn:", "    params:",
    '      a: &a ["x","x","x","x","x","x","x","x","x"]',
    *[f"      {c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdef", "bcdefg")],
])


def _cli(args: list[str], tmp_path: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray-tmp"), "ORCHESTRATOR_STORE": str(tmp_path / "runs")}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120, input=stdin)


def _short_ray_tmpdir() -> str:
    """Ray's socket paths must stay under the AF_UNIX limit: a short folder under /tmp."""
    return tempfile.mkdtemp(prefix="rt-", dir="/tmp")


def _spec(tmp_path: Path, **overrides) -> Path:
    spec = tiny_spec_dict(store=str(tmp_path / "store"), **overrides)
    spec["storage"]["local_dir"] = str(tmp_path / "local")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _isic_folder(tmp_path: Path, layout: str) -> str:
    root = tmp_path / f"data-{layout}"
    if layout == "wrong":
        (root / "images").mkdir(parents=True)
        (root / "images" / "a.jpg").write_bytes(b"not really")
    elif layout == "one_class":
        from PIL import Image

        (root / "Train" / "melanoma").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "Train" / "melanoma" / "a.jpg")
    else:
        root.mkdir()
    return str(root)


def _case_files(tmp_path: Path, case: str) -> list[str]:
    """The command line of one bad-input case (files it needs are made under tmp_path, outside the store)."""
    iso = lambda layout, **kw: {"source": "isic_folder", "path": _isic_folder(tmp_path, layout), **kw}  # noqa: E731
    specs = {
        "empty dataset folder": dict(dataset=iso("empty")),
        "wrong dataset layout": dict(dataset=iso("wrong")),
        "class the data lacks": dict(dataset=iso("one_class", classes=["nevus"])),
        "ftp store": dict(storage={"uri": "ftp://host/x"}),
        "bare s3 store": dict(storage={"uri": "s3://"}),
        "a billion epochs": dict(grid={"architectures": ["cnn"], "epochs": [1_000_000_000]}),
        "a billion synthetic images": dict(dataset={"samples_per_class": 1_000_000_000}),
        "epochs true": dict(grid={"architectures": ["cnn"], "epochs": [True]}),
        "name with a newline": dict(name="tiny\n"),
    }
    if case in specs:
        return ["submit", str(_spec(tmp_path, **specs[case]))]
    if case == "store is a file":
        (tmp_path / "afile").write_text("x")
        return ["submit", str(_spec(tmp_path, storage={"uri": str(tmp_path / "afile" / "store")}))]
    raw = {"binary file": bytes(range(256)) * 4, "alias bomb": BOMB.encode(),
           "duplicate keys": b"name: a\ngrid: {architectures: [cnn], epochs: [1]}\ngrid: {architectures: [cnn], epochs: [2]}\n"}
    if case in raw:
        (tmp_path / "bad.yaml").write_bytes(raw[case])
        return ["submit", str(tmp_path / "bad.yaml"), "--dry-run" if case == "alias bomb" else "--yes"]
    good = str(_spec(tmp_path))
    (tmp_path / "runs").mkdir()
    return {
        "--store ftp": ["submit", good, "--store", "ftp://host/x"],
        "--run-id with ..": ["submit", good, "--run-id", "../../x"],
        "unreachable --address": ["submit", good, "--local-driver", "--address", "127.0.0.1:9"],
        "resume of an unknown run": ["resume", "20990101-000000-abcd"],
        "report ../../etc": ["report", "../../etc"],
        "runs of a missing store": ["runs", "--store", str(tmp_path / "nowhere")],
    }[case]


CASES = {
    "empty dataset folder": "dataset.path", "wrong dataset layout": "dataset.path",
    "class the data lacks": "dataset.classes", "ftp store": "storage.uri", "bare s3 store": "storage.uri",
    "a billion epochs": "grid.epochs", "a billion synthetic images": "dataset.samples_per_class",
    "epochs true": "grid.epochs[0]", "name with a newline": "name", "store is a file": "storage.uri",
    "binary file": "not a text file", "alias bomb": "aliases", "duplicate keys": "appears twice",
    "--store ftp": "--store", "--run-id with ..": "--run-id", "unreachable --address": "--address",
    "resume of an unknown run": "not found", "report ../../etc": "not a run id", "runs of a missing store": "--store",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_started_or_written(tmp_path, case):
    args = _case_files(tmp_path, case)
    t = time.monotonic()
    proc = _cli(args, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and CASES[case] in lines[0], proc.stderr
    assert time.monotonic() - t < 60
    assert not (tmp_path / "ray-tmp").exists(), "a Ray session was started"
    for written in ("store", "local", "runs/x"):
        assert not (tmp_path / written).exists(), f"{written} was written"


@pytest.mark.slow
def test_no_credential_reaches_ray_logs_the_store_or_the_journal(tmp_path, s3_endpoint, s3_bucket):
    sentinel = "sentinel-secret-5f2c9e1a7d"
    spec = tiny_spec_dict(name="secret", store=f"s3://{s3_bucket}/studies")
    spec["storage"].update(endpoint_url=s3_endpoint, local_dir=str(tmp_path / "local"))
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(spec))
    ray_tmp = Path(_short_ray_tmpdir())
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": sentinel, "RAY_TMPDIR": str(ray_tmp)}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", str(path)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sentinel not in proc.stdout + proc.stderr
    logs = [p for p in ray_tmp.rglob("*") if p.is_file() and not p.is_socket()]
    assert any(p.name == "runtime_env_agent.log" for p in logs), "Ray's logs were not where the test looked"
    leaks = [p for p in logs if sentinel.encode() in p.read_bytes()]
    assert leaks == [], leaks
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for obj in client.list_objects_v2(Bucket=s3_bucket)["Contents"]:
        assert sentinel.encode() not in client.get_object(Bucket=s3_bucket, Key=obj["Key"])["Body"].read(), obj["Key"]
    for p in (tmp_path / "local").rglob("*"):
        assert not p.is_file() or sentinel.encode() not in p.read_bytes(), p


@pytest.mark.slow
def test_ctrl_c_records_nothing_as_failed_exits_130_and_resume_runs_the_rest(tmp_path):
    store = tmp_path / "store"
    path = _spec(tmp_path, name="sigint", grid={"architectures": ["cnn"], "epochs": [1, 2, 3]},
                 execution={"max_concurrent_trials": 1, "cpus_per_trial": 1})
    env = {**os.environ, "RAY_TMPDIR": _short_ray_tmpdir()}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "submit", str(path)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(store.glob("sigint/*/trials/*/record.json")):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    records = [json.loads(p.read_text()) for p in store.glob("sigint/*/trials/*/record.json")]
    assert records and all(r["status"] == "completed" for r in records), [r["status"] for r in records]
    (run_dir,) = (store / "sigint").iterdir()
    first = json.loads((run_dir / "run.json").read_text())
    assert first["interrupted"] is True and len(first["unfinished"]) == 3 - len(records)

    resumed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "resume", run_dir.name, "--store", str(store)],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = [json.loads(p.read_text()) for p in store.glob("sigint/*/trials/*/record.json")]
    assert len(after) == 3 and all(r["status"] == "completed" for r in after)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["started"] == first["started"] and len(info["resumed"]) == 1 and "interrupted" not in info

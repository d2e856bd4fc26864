"""The KubeRay manifests in infra/ against the KubeRay v1.7.0 CRD schemas (trimmed copies in tests/data/kuberay,
made by make_schemas.py there: no PyPI package ships the CRDs) and the RayJob checks KubeRay's controller makes
(ray-operator/controllers/ray/utils/validation.go, ValidateRayJobSpec, v1.7.0)."""
from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "data" / "kuberay"
KUBERAY = "v1.7.0"
MANIFESTS = ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml", "kuberay-rayjob-existing-cluster.yaml")
SERVICE_ACCOUNT = {"type": "object", "required": ["apiVersion", "kind", "metadata"], "additionalProperties": False,
                   "properties": {"apiVersion": {"const": "v1"}, "kind": {"const": "ServiceAccount"},
                                  "metadata": {"type": "object", "required": ["name"]},
                                  "automountServiceAccountToken": {"type": "boolean"}}}


def _strict(node):
    """A structural CRD schema as JSON Schema with unknown fields rejected (kubectl's strict field validation)."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _validator(kind: str):
    schema = json.loads((SCHEMAS / f"{kind}-{KUBERAY}.schema.json").read_text())
    assert schema["kuberay"] == KUBERAY and schema["version"] == "v1"
    return jsonschema.Draft7Validator(_strict(schema["openAPIV3Schema"]))


VALIDATORS = {"RayCluster": _validator("raycluster"), "RayJob": _validator("rayjob"),
              "ServiceAccount": jsonschema.Draft7Validator(SERVICE_ACCOUNT)}


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "infra" / name).read_text()) if d]


def _errors(doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATORS[doc["kind"]].iter_errors(doc)]


def _controller_errors(job: dict) -> list[str]:
    """ValidateRayJobSpec (KubeRay v1.7.0) for the fields these manifests use."""
    spec, errors = job["spec"], []
    selector = spec.get("clusterSelector") or {}
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        errors.append("suspend needs shutdownAfterJobFinishes")
    if spec.get("ttlSecondsAfterFinished", 0) > 0 and not spec.get("shutdownAfterJobFinishes"):
        errors.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
    if not spec.get("rayClusterSpec") and not selector:
        errors.append("one of rayClusterSpec or clusterSelector must be set")
    if selector and not selector.get("ray.io/cluster"):
        errors.append("clusterSelector needs ray.io/cluster")
    if selector and (spec.get("backoffLimit") or 0) > 0:
        errors.append("backoffLimit is incompatible with clusterSelector")
    if spec.get("submissionMode") == "SidecarMode" and (selector or spec.get("submitterPodTemplate")):
        errors.append("SidecarMode takes neither clusterSelector nor submitterPodTemplate")
    return errors


def _service_accounts(docs: list[dict]) -> set[str]:
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "serviceAccountName" in node:
                found.add(node["serviceAccountName"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(docs)
    return found


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_validate_against_the_kuberay_crds(name):
    docs = _docs(name)
    assert docs and all(d["kind"] in VALIDATORS for d in docs)
    for doc in docs:
        assert _errors(doc) == [], f"{name}: {doc['kind']}"
        if doc["kind"] == "RayJob":
            assert _controller_errors(doc) == []


def test_the_validation_catches_a_misspelt_or_mistyped_field():
    (job,) = [d for d in _docs("kuberay-rayjob.yaml") if d["kind"] == "RayJob"]
    typo = copy.deepcopy(job)
    typo["spec"]["shutdownAfterJobFinish"] = typo["spec"].pop("shutdownAfterJobFinishes")
    assert any("shutdownAfterJobFinish" in e for e in _errors(typo))
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert _errors(wrong_type)
    deep = copy.deepcopy(job)
    deep["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "x"
    assert _errors(deep)
    selector = copy.deepcopy(job)
    selector["spec"].update(clusterSelector={"ray.io/cluster": "skinlesion"}, backoffLimit=2)
    assert _controller_errors(selector) == ["backoffLimit is incompatible with clusterSelector"]


def test_every_service_account_a_pod_runs_as_is_created():
    cluster = _docs("kuberay-raycluster.yaml")
    fresh = _docs("kuberay-rayjob.yaml")
    created = {name: {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
               for name, docs in (("cluster", cluster), ("fresh", fresh))}
    assert _service_accounts(cluster) == {"skinlesion-ray"} <= created["cluster"]
    assert _service_accounts(fresh) <= created["fresh"]
    # the job on the existing cluster runs its submitter in the namespace the cluster manifest set up
    assert _service_accounts(_docs("kuberay-rayjob-existing-cluster.yaml")) <= created["cluster"]


@pytest.mark.parametrize("name", ["kuberay-rayjob.yaml", "kuberay-rayjob-existing-cluster.yaml"])
def test_a_rayjob_runs_the_study_file_from_its_configmap(name):
    from orchestrator.cli import build_parser

    (job,) = [d for d in _docs(name) if d["kind"] == "RayJob"]
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    args = build_parser().parse_args(argv[1:])
    assert argv[0] == "orchestrator" and args.command == "submit" and args.local_driver and args.address == "auto"
    working_dir = yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"]
    pod = spec["submitterPodTemplate"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount["mountPath"] == working_dir and volume["configMap"]["name"] == "skinlesion-experiment"
    assert args.file == "study.yaml" and "--from-file=study.yaml=" in (ROOT / "infra" / name).read_text()
    if "clusterSelector" in spec:
        (cluster,) = [d for d in _docs("kuberay-raycluster.yaml") if d["kind"] == "RayCluster"]
        assert spec["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
        assert "shutdownAfterJobFinishes" not in spec
    else:
        assert spec["shutdownAfterJobFinishes"] is True and spec["rayClusterSpec"]["workerGroupSpecs"]

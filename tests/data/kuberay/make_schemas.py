"""Regenerate the trimmed KubeRay CRD schemas the manifest tests validate against.

No PyPI package ships the KubeRay CRDs, so the tests keep a copy: the ``openAPIV3Schema`` of the RayJob and
RayCluster CRDs of KubeRay (ray-operator/config/crd/bases/ray.io_{rayjobs,rayclusters}.yaml at the tag named
below), with descriptions dropped and subtrees deeper than ``MAX_DEPTH`` object levels replaced by ``{}``
(anything). Run: ``python tests/data/kuberay/make_schemas.py KUBERAY_CHECKOUT``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

KUBERAY_TAG = "v1.7.0"
MAX_DEPTH = 11
HERE = Path(__file__).parent


def trim(node, depth: int = 0):
    if isinstance(node, list):
        return [trim(v, depth) for v in node]
    if not isinstance(node, dict):
        return node
    if depth > MAX_DEPTH:
        return {}
    out = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key == "properties":
            out[key] = {k: trim(v, depth + 1) for k, v in value.items()}
        else:
            out[key] = trim(value, depth)
    return out


def main(checkout: str) -> None:
    for kind, crd in (("rayjob", "ray.io_rayjobs.yaml"), ("raycluster", "ray.io_rayclusters.yaml")):
        text = subprocess.run(["git", "-C", checkout, "show", f"{KUBERAY_TAG}:ray-operator/config/crd/bases/{crd}"],
                              check=True, capture_output=True, text=True).stdout
        doc = yaml.safe_load(text)
        (version,) = [v for v in doc["spec"]["versions"] if v["name"] == "v1"]
        schema = {"kuberay": KUBERAY_TAG, "crd": crd, "group": doc["spec"]["group"], "version": "v1",
                  "kind": doc["spec"]["names"]["kind"], "openAPIV3Schema": trim(version["schema"]["openAPIV3Schema"])}
        (HERE / f"{kind}-{KUBERAY_TAG}.schema.json").write_text(json.dumps(schema, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv[1])

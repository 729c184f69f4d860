"""The manifests as kustomize renders them, for everything that reads them: `make manifests`
(deploy/check.py), tests/deploy/test_manifests.py and `make image-test` (tools/image_test.py), so
that what is checked is what `kubectl apply -k` would send.

Rendering runs the real kustomize inside kubectl, from the deploy tools' virtual environment
(requirements/deploy.txt, made by `make .venv-deploy/.installed`; its pins would conflict with the
service's, hence a venv of its own). The custom resources' kinds (InferenceService,
ServiceMonitor), which Kubernetes' own schemas do not know, are checked against the CRDs their
projects publish, kept in deploy/schemas/ (its README says which and from where), made strict:
an unknown field is an error, as it is for `kubectl apply`'s default server-side field validation.
"""

from __future__ import annotations

import functools
import hashlib
import lzma
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = ROOT / ".venv-deploy" / "bin" / "kubectl"
SCHEMAS = ROOT / "deploy" / "schemas"

# What can be deployed, by name: each a kustomization; cpu is the default.
TARGETS = {
    "cpu": "deploy/kubernetes/overlays/cpu",
    "gpu": "deploy/kubernetes/overlays/gpu",
    "monitoring": "deploy/kubernetes/overlays/monitoring",
    "inflight-autoscaling": "deploy/kubernetes/overlays/inflight-autoscaling",
    "kserve": "deploy/kserve",
}
SERVER_CONTAINERS = ("server", "kserve-container")  # the Deployment's, KServe's custom predictor's


class KubectlMissing(RuntimeError):
    """The deploy tools' kubectl is not installed."""


def render(target: str) -> str:
    """The YAML that `kubectl kustomize` makes of a target (a name of TARGETS)."""
    if not KUBECTL.exists():
        raise KubectlMissing(f"{KUBECTL.relative_to(ROOT)} is missing: `make .venv-deploy/.installed` installs it "
                             "(requirements/deploy.txt)")
    result = subprocess.run([str(KUBECTL), "kustomize", str(ROOT / TARGETS[target])],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {TARGETS[target]} failed:\n{result.stderr}")
    return result.stdout


def load(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def rendered(target: str) -> list[dict[str, Any]]:
    return load(render(target))


def find(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one resource of this kind."""
    found = [resource for resource in resources if resource["kind"] == kind]
    if len(found) != 1:
        raise LookupError(f"{len(found)} resources of kind {kind}, not one")
    return found[0]


def workload(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The resource that runs the server: the Deployment, or KServe's InferenceService."""
    found = [resource for resource in resources if resource["kind"] in ("Deployment", "InferenceService")]
    if len(found) != 1:
        raise LookupError(f"{len(found)} workloads (Deployment, InferenceService), not one")
    return found[0]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, or of an InferenceService's predictor (a pod spec with KServe's
    own fields beside it)."""
    if resource["kind"] == "InferenceService":
        return resource["spec"]["predictor"]
    return resource["spec"]["template"]["spec"]


def server_container(resource: dict[str, Any]) -> dict[str, Any]:
    containers = [container for container in pod_spec(resource)["containers"] if container["name"] in SERVER_CONTAINERS]
    if len(containers) != 1:
        raise LookupError(f"no single server container (named one of {SERVER_CONTAINERS})")
    return containers[0]


def environment(container: dict[str, Any]) -> dict[str, str]:
    """The variables a container sets, by name (values only: the server needs no secrets)."""
    env = {}
    for item in container.get("env", []):
        if "value" not in item:
            raise ValueError(f"{item['name']} has no plain value")
        env[item["name"]] = item["value"]
    return env


def empty_dirs(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The server container's writable mounts: mount path -> its emptyDir volume's settings."""
    volumes = {volume["name"]: volume for volume in pod_spec(resource).get("volumes", [])}
    mounts = {}
    for mount in server_container(resource).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume and not mount.get("readOnly"):
            mounts[mount["mountPath"]] = volume["emptyDir"] or {}
    return mounts


@dataclass(frozen=True)
class CustomResourceDefinition:
    """A CRD kept in deploy/schemas/, xz-compressed, with the SHA-256 of the upstream file."""

    file: str
    sha256: str

    def text(self) -> str:
        text = lzma.decompress((SCHEMAS / self.file).read_bytes()).decode()
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest != self.sha256:
            raise ValueError(f"deploy/schemas/{self.file} is not the upstream file: sha256 {digest}")
        return text


CUSTOM_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): CustomResourceDefinition(
        "serving.kserve.io_inferenceservices.yaml.xz",
        "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): CustomResourceDefinition(
        "monitoring.coreos.com_servicemonitors.yaml.xz",
        "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32"),
}


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema in which an object with declared properties accepts no others
    (the API server would prune them silently, and `kubectl apply` refuse them), except where the
    CRD keeps unknown fields on purpose."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: closed(child) for name, child in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = closed(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [closed(child) for child in schema[key]]
    return schema


@functools.cache
def custom_resource_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The closed schema of a custom kind at this API version; KeyError if deploy/schemas has none."""
    # KServe's CRD is 2 MB of YAML: libyaml's parser, where PyYAML has it, reads it in a tenth of the time.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    definition = yaml.load(CUSTOM_KINDS[(api_version, kind)].text(), Loader=loader)
    version = api_version.split("/")[1]
    for served in definition["spec"]["versions"]:
        if served["name"] == version and served.get("served"):
            return closed(served["schema"]["openAPIV3Schema"])
    raise KeyError(f"{definition['metadata']['name']} serves no version {version}")


def custom_resource_errors(resource: dict[str, Any]) -> list[str]:
    """What the CRD's schema says is wrong with a custom resource (empty when nothing)."""
    schema = custom_resource_schema(resource["apiVersion"], resource["kind"])
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(resource),
                    key=lambda error: [str(part) for part in error.absolute_path])
    return [f"{'.'.join(str(part) for part in error.absolute_path) or '(root)'}: {error.message}" for error in errors]

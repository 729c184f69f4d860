"""`make manifests`: every deployable kustomization (deploy/manifests.py's TARGETS) rendered by the
real kustomize, validated, and scanned, without a cluster. Runs in .venv-deploy
(requirements/deploy.txt): ``python -m deploy.check``.

1. Render each target with `kubectl kustomize`, into test-output/manifests/TARGET.yaml.
2. Validate every resource strictly (unknown fields are errors) against Kubernetes' own schemas
   for each of KUBERNETES_VERSIONS, with kubernetes-validate. Its schemas know no custom kinds, so
   an InferenceService or a ServiceMonitor is validated against its project's CRD instead
   (deploy/schemas/, made strict), its metadata as Kubernetes' ObjectMeta, and an
   InferenceService's predictor, which is a pod spec with KServe's fields beside it, as a Pod's
   spec. Any other kind without a schema is an error, not the warning kubernetes-validate's
   command line prints for it.
3. Scan the rendered files with checkov (which knows no InferenceService: it scans the pod KServe
   makes of the predictor, written beside the render as TARGET.predictor-pods.yaml instead):
   every failed check must be one that
   deploy/checkov-skips.yaml explains (its reason is printed beside the finding), and every check
   named there must still fail somewhere (no stale skips).

Exit status 1 with what failed, else 0 with a summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, schema_contents

from deploy import manifests

# 1.34: the preStop sleep action is GA there (beta, on by default, since 1.30); 1.37: the newest
# kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.34.0", "1.35.0", "1.36.0", "1.37.0")
OUTPUT = manifests.ROOT / "test-output" / "manifests"
SKIPS = manifests.ROOT / "deploy" / "checkov-skips.yaml"


def kubernetes_errors(resource: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path) or "(root)"
        return [f"{path}: {error.message}"]
    return []


def pod_spec_fields(version: str) -> set[str]:
    schema = schema_contents(f"kubernetes-json-schema/v{version}-local-strict/podspec-v1.json", version)
    return set(schema["properties"])


def predictor_pod(resource: dict, version: str) -> dict:
    """The pod KServe makes of an InferenceService's predictor: its pod spec fields, and the label
    KServe gives its pods."""
    fields = pod_spec_fields(version)
    name = resource["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-predictor", "namespace": resource["metadata"].get("namespace"),
                         "labels": {"serving.kserve.io/inferenceservice": name}},
            "spec": {field: value for field, value in resource["spec"]["predictor"].items() if field in fields}}


def custom_errors(resource: dict) -> list[str]:
    """A custom resource: its CRD's schema; its metadata and (InferenceService) its pod spec as
    Kubernetes' own, at every version."""
    errors = manifests.custom_resource_errors(resource)
    for version in KUBERNETES_VERSIONS:
        metadata = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": resource["metadata"]}
        errors += [f"metadata (as Kubernetes {version}'s ObjectMeta): {error}"
                   for error in kubernetes_errors(metadata, version)]
        if resource["kind"] == "InferenceService":
            errors += [f"spec.predictor (as Kubernetes {version}'s PodSpec): {error}"
                       for error in kubernetes_errors(predictor_pod(resource, version), version)]
    return errors


def validate(target: str, resources: list[dict]) -> list[str]:
    problems = []
    for resource in resources:
        name = f"{target}: {resource['kind']}/{resource['metadata']['name']}"
        key = (resource["apiVersion"], resource["kind"])
        if key in manifests.CUSTOM_KINDS:
            errors = custom_errors(resource)
            how = f"its CRD (deploy/schemas/{manifests.CUSTOM_KINDS[key].file}), closed"
        else:
            errors = []
            for version in KUBERNETES_VERSIONS:
                try:
                    errors += [f"Kubernetes {version}: {error}" for error in kubernetes_errors(resource, version)]
                except SchemaNotFoundError:
                    errors.append(f"no schema for {resource['apiVersion']} {resource['kind']} in Kubernetes {version} "
                                  "nor in deploy/schemas/")
            how = f"Kubernetes {', '.join(KUBERNETES_VERSIONS)}, strict"
        print(f"  {'ok  ' if not errors else 'FAIL'} {name} ({how})")
        problems += [f"{name}: {error}" for error in errors]
    return problems


def checkov(skips: dict[str, str]) -> list[str]:
    """Scan the rendered files; the problems: unexplained findings and stale skips."""
    environment = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}  # no call to PyPI
    command = [str(Path(sys.executable).parent / "checkov"), "--directory", str(OUTPUT), "--framework", "kubernetes",
               "--output", "json", "--skip-download", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode not in (0, 1):  # 1: checks failed
        return [f"checkov exited with {result.returncode}:\n{result.stderr}"]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed, passed = [], 0
    for part in reports:
        if "results" not in part:  # nothing scanned: checkov's empty summary
            continue
        failed += part["results"]["failed_checks"]
        passed += part["summary"]["passed"]  # --quiet leaves the passed checks out of "results"
        if part["results"].get("parsing_errors"):
            return [f"checkov could not parse {part['results']['parsing_errors']}"]
    problems = []
    for finding in failed:
        where = f"{Path(finding['file_path']).stem}: {finding['resource']}"
        if finding["check_id"] in skips:
            print(f"  explained {finding['check_id']} ({finding['check_name']}) on {where}")
        else:
            problems.append(f"checkov {finding['check_id']} ({finding['check_name']}) fails on {where}, and "
                            f"deploy/checkov-skips.yaml does not explain it")
    for check_id in sorted(set(skips) - {finding["check_id"] for finding in failed}):
        problems.append(f"deploy/checkov-skips.yaml explains {check_id}, which no longer fails: remove it")
    print(f"  checkov: {passed} checks passed, {len(failed)} failed, all of them explained"
          if not problems else f"  checkov: {passed} passed, {len(failed)} failed")
    for check_id, reason in skips.items():
        print(f"  {check_id}: {reason}")
    return problems


def main() -> int:
    started = time.monotonic()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for stale in OUTPUT.glob("*.yaml"):
        stale.unlink()
    problems = []
    for target, folder in manifests.TARGETS.items():
        print(f"== {target}: kubectl kustomize {folder}", flush=True)
        text = manifests.render(target)
        (OUTPUT / f"{target}.yaml").write_text(text)
        resources = manifests.load(text)
        problems += validate(target, resources)
        # checkov knows no InferenceService: it scans the pod KServe makes of its predictor instead.
        pods = [predictor_pod(resource, KUBERNETES_VERSIONS[-1]) for resource in resources
                if resource["kind"] == "InferenceService"]
        if pods:
            (OUTPUT / f"{target}.predictor-pods.yaml").write_text(yaml.safe_dump_all(pods, sort_keys=False))
    print("== checkov on test-output/manifests/", flush=True)
    problems += checkov(yaml.safe_load(SKIPS.read_text()))
    if problems:
        print("\nmanifests: FAILED\n" + "\n".join(f"- {problem}" for problem in problems), file=sys.stderr)
        return 1
    print(f"\nmanifests: {len(manifests.TARGETS)} targets rendered, validated (Kubernetes "
          f"{KUBERNETES_VERSIONS[0]}-{KUBERNETES_VERSIONS[-1]}, CRDs from deploy/schemas/) and scanned in "
          f"{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

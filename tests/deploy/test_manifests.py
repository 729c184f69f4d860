"""The Kubernetes and KServe manifests (deploy/), as kustomize renders them, held to the code they
run: the routes of models.yaml, the Dockerfiles' port, user, image names and environment, the
settings the server reads (mnist_service.settings), and gunicorn's own configuration, computed by
gunicorn.conf.py itself from each manifest's environment.

Rendering needs the deploy tools' kubectl (`make .venv-deploy/.installed`, which `make test`
runs first); without it these tests fail, saying so. `make manifests` validates the same renders
against Kubernetes' schemas and scans them with checkov.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy import manifests
from mnist_service import metrics
from mnist_service.settings import ENGINES, Settings

ROOT = Path(__file__).resolve().parent.parent.parent
CPU_DOCKERFILE = ROOT / "Dockerfile"
GPU_DOCKERFILE = ROOT / "docker" / "gpu" / "Dockerfile"
TARGETS = list(manifests.TARGETS)
KUBERNETES_TARGETS = [target for target in TARGETS if target != "kserve"]
MB = 1_000_000

# Measured (docs/scaling.md): a worker's resident memory once its models are loaded, by engine (the
# TensorFlow figure is the CPU build's; CUDA adds its context on a GPU), the master's, and what a
# worker adds at worst while it holds MAX_IN_FLIGHT uploads of MAX_UPLOAD_BYTES.
WORKER_RSS = {"litert-int8": 100 * MB, "litert-float32": 100 * MB, "tensorflow": 560 * MB}
MASTER_RSS = 46 * MB
UPLOADS_WORST_RSS = 630 * MB
# Variables that neither the server nor gunicorn.conf.py reads, but what runs the models does:
# TensorFlow's GPU allocator grows its memory on demand instead of taking the whole GPU at once.
TENSORFLOW_READS = {"TF_FORCE_GPU_ALLOW_GROWTH"}
# KServe's controller reads a custom predictor's PROTOCOL (v1 or v2) to route to it.
KSERVE_READS = {"PROTOCOL"}
# Knative (KServe's other deployment mode) sets these itself and refuses a container that sets
# them, and accepts only these names for the container's port (knative.dev/serving, k8s_validation).
KNATIVE_RESERVED = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_PORT_NAMES = {"", "http1", "h2c"}


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    try:
        return {target: manifests.rendered(target) for target in TARGETS}
    except manifests.KubectlMissing as error:
        pytest.fail(str(error))


def dockerfile_image(path: Path) -> dict:
    """What a Dockerfile's final stage runs with: the ENV it inherits and sets (following FROM
    through the stages), USER, EXPOSE, and the tag its header's build command gives it."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages, current = {}, None
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            inherited = stages.get(base.strip(), {"env": {}})
            current = {"env": dict(inherited["env"])}
            stages[name.strip() or "final"] = current
        elif keyword == "ENV":
            current["env"].update(item.split("=", 1) for item in rest.split())
        elif keyword in ("USER", "EXPOSE"):
            current[keyword] = rest.strip()
    image = stages["final"]
    image["tag"] = re.search(r"^#.*docker build (?:-f \S+ )?-t (\S+) \.", path.read_text(), re.M).group(1)
    return image


def spec_paths() -> dict:
    return yaml.safe_load((ROOT / "models.yaml").read_text())["paths"]


def gunicorn_names() -> set[str]:
    """The variables gunicorn.conf.py reads, or sets for TensorFlow when they are unset."""
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "gunicorn.conf.py").read_text()))


def setting_names() -> set[str]:
    import dataclasses

    return {field.metadata["variable"] for field in dataclasses.fields(Settings)}


def image_of(target: str) -> dict:
    return dockerfile_image(GPU_DOCKERFILE if target == "gpu" else CPU_DOCKERFILE)


def effective_env(target: str, resources: list[dict]) -> dict[str, str]:
    """The server's environment in the pod: the image's ENV, then the manifest's."""
    container = manifests.server_container(manifests.workload(resources))
    return {**image_of(target)["env"], **manifests.environment(container)}


def gunicorn_config(env: dict[str, str], tmp_path: Path) -> dict:
    """gunicorn.conf.py's settings as it computes them from this environment (and nothing of this
    process's), in a Python of its own; the metrics folder it would make goes under tmp_path."""
    code = ("import json, runpy; c = runpy.run_path('gunicorn.conf.py'); print(json.dumps({name: c[name] for name in "
            "('bind', 'workers', 'timeout', 'graceful_timeout', 'worker_tmp_dir')}))")
    environ = {"PATH": os.environ["PATH"], **env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def quantity(text: str | int) -> float:
    """A Kubernetes resource quantity (2, 500m, 512Mi, 2Gi) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    found = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    return float(found.group(1)) * units.get(found.group(2), 1)


def security_value(pod: dict, container: dict, field: str):
    """A security-context field as it applies to the container: its own, else the pod's."""
    return container.get("securityContext", {}).get(field, pod.get("securityContext", {}).get(field))


@pytest.mark.parametrize("target", TARGETS)
def test_the_probes_ask_routes_the_spec_serves_on_the_images_port(rendered, target):
    workload = manifests.workload(rendered[target])
    container = manifests.server_container(workload)
    image, env = image_of(target), effective_env(target, rendered[target])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert len(ports) == 1, "one HTTP port: the server's"
    assert list(ports.values()) == [int(image["EXPOSE"])] == [int(env["PORT"])], (ports, image["EXPOSE"], env["PORT"])
    paths = spec_paths()
    expected = {"startupProbe": "/health/ready", "readinessProbe": "/health/ready", "livenessProbe": "/health/live"}
    for probe, path in expected.items():
        http = container[probe]["httpGet"]
        assert http["path"] == path and "get" in paths[path], (probe, http)
        assert http["port"] in ports, f"{probe} asks port {http['port']}, not the container's {ports}"


@pytest.mark.parametrize("target", KUBERNETES_TARGETS)
def test_the_service_scrapes_and_network_policy_reach_the_servers_port(rendered, target):
    resources = rendered[target]
    deployment = manifests.find(resources, "Deployment")
    port = manifests.server_container(deployment)["ports"][0]
    service = manifests.find(resources, "Service")
    assert [item["targetPort"] for item in service["spec"]["ports"]] == [port["name"]]
    policy = manifests.find(resources, "NetworkPolicy")
    assert [rule["ports"] for rule in policy["spec"]["ingress"]] == [[{"port": port["name"], "protocol": "TCP"}]]
    assert "egress" not in policy["spec"] and "Egress" in policy["spec"]["policyTypes"], "the server calls nothing"
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    monitors = [resource for resource in resources if resource["kind"] == "ServiceMonitor"]
    if monitors:
        assert not any(name.startswith("prometheus.io/") for name in annotations), "scraped twice"
        endpoints = monitors[0]["spec"]["endpoints"]
        service_port = service["spec"]["ports"][0]["name"]
        assert [(item["port"], item["path"]) for item in endpoints] == [(service_port, "/metrics")]
        assert monitors[0]["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert "get" in spec_paths()["/metrics"]
    else:
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == port["containerPort"]
        assert annotations["prometheus.io/path"] == "/metrics" and "get" in spec_paths()["/metrics"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_pod_runs_as_the_images_user_locked_down(rendered, target):
    workload = manifests.workload(rendered[target])
    pod, container = manifests.pod_spec(workload), manifests.server_container(workload)
    uid, gid = image_of(target)["USER"].split(":")
    assert int(uid) != 0
    assert security_value(pod, container, "runAsUser") == int(uid)
    assert security_value(pod, container, "runAsGroup") == int(gid)
    assert security_value(pod, container, "runAsNonRoot") is True
    assert security_value(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert all(set(volume) <= {"name", "emptyDir"} for volume in pod["volumes"]), "emptyDir volumes only"
    namespace = manifests.find(rendered[target], "Namespace")
    assert workload["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", TARGETS)
def test_every_variable_set_is_one_the_server_or_its_runtime_reads(rendered, target):
    container = manifests.server_container(manifests.workload(rendered[target]))
    names = set(manifests.environment(container))
    read = setting_names() | gunicorn_names() | TENSORFLOW_READS | (KSERVE_READS if target == "kserve" else set())
    assert names <= read, f"set but read by nothing: {sorted(names - read)}"
    Settings.from_env(effective_env(target, rendered[target]))  # and every value is one the server accepts


@pytest.mark.parametrize("target", TARGETS)
def test_the_grace_period_outlasts_the_prestop_sleep_the_drain_and_gunicorns_timeout(rendered, target, tmp_path):
    workload = manifests.workload(rendered[target])
    env = effective_env(target, rendered[target])
    pre_stop = manifests.server_container(workload)["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful_timeout = gunicorn_config(env, tmp_path)["graceful_timeout"]
    drain = Settings.from_env(env).drain_seconds
    grace = manifests.pod_spec(workload)["terminationGracePeriodSeconds"]
    assert pre_stop > 0 and grace > pre_stop + drain + graceful_timeout, (grace, pre_stop, drain, graceful_timeout)


@pytest.mark.parametrize("target", TARGETS)
def test_the_resources_are_those_of_its_workers(rendered, target, tmp_path):
    workload = manifests.workload(rendered[target])
    env = effective_env(target, rendered[target])
    workers = gunicorn_config(env, tmp_path)["workers"]
    engine = Settings.from_env(env).engine
    resources = manifests.server_container(workload)["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert quantity(requests["cpu"]) == quantity(limits["cpu"]) == workers, "one core per worker"
    steady = workers * WORKER_RSS[engine] + MASTER_RSS
    assert quantity(requests["memory"]) >= steady, (requests["memory"], steady)
    assert quantity(limits["memory"]) >= steady + workers * UPLOADS_WORST_RSS, limits["memory"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_server_writes_only_to_its_empty_dirs(rendered, target, tmp_path):
    """What the server writes: Prometheus' multiprocess files, Python's temporary files (/tmp, as
    TMPDIR is unset), gunicorn's heartbeat files (/dev/shm, the runtime's tmpfs, else the temporary
    folder); each an emptyDir but /dev/shm, and no emptyDir that nothing writes to."""
    workload = manifests.workload(rendered[target])
    env = effective_env(target, rendered[target])
    mounts = manifests.empty_dirs(workload)
    assert "TMPDIR" not in env
    metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"]
    assert Settings.from_env(env).metrics_dir == Path(metrics_dir)
    heartbeat = gunicorn_config(env, tmp_path)["worker_tmp_dir"]
    assert heartbeat in ("/dev/shm", None)
    assert set(mounts) == {metrics_dir, "/tmp"}, mounts
    assert mounts[metrics_dir].get("medium") == "Memory", "written at every request: in memory"
    assert all("sizeLimit" in volume for volume in mounts.values())


def test_the_overlays_run_the_images_the_dockerfiles_build(rendered):
    cpu = manifests.server_container(manifests.find(rendered["cpu"], "Deployment"))
    gpu_deployment = manifests.find(rendered["gpu"], "Deployment")
    gpu, gpu_pod = manifests.server_container(gpu_deployment), manifests.pod_spec(gpu_deployment)
    assert cpu["image"] == dockerfile_image(CPU_DOCKERFILE)["tag"] == "mnist-server"
    assert gpu["image"] == dockerfile_image(GPU_DOCKERFILE)["tag"] == "mnist-server:gpu"
    cpu_env, gpu_env = effective_env("cpu", rendered["cpu"]), effective_env("gpu", rendered["gpu"])
    assert Settings.from_env(cpu_env).engine != "tensorflow", "the CPU image holds no TensorFlow"
    gpu_image_engine = dockerfile_image(GPU_DOCKERFILE)["env"]["INFERENCE_ENGINE"]
    assert gpu_image_engine in ENGINES and manifests.environment(gpu)["INFERENCE_ENGINE"] == gpu_image_engine
    if int(gpu_env["WORKERS"]) > 1:
        assert gpu_env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true", "workers sharing a GPU must grow into it"
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert gpu_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {toleration["key"] for toleration in gpu_pod["tolerations"]} == {"nvidia.com/gpu"}


@pytest.mark.parametrize("target", KUBERNETES_TARGETS)
def test_the_autoscaler_budget_service_and_spread_select_the_servers_pods(rendered, target):
    resources = rendered[target]
    deployment = manifests.find(resources, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the HPA owns the count"

    def selects(selector: dict) -> bool:
        return selector.items() <= labels.items()

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    hpa = manifests.find(resources, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    budget = manifests.find(resources, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] < hpa["spec"]["minReplicas"]
    assert budget["selector"] == deployment["spec"]["selector"]
    assert selects(manifests.find(resources, "Service")["spec"]["selector"])
    assert selects(manifests.find(resources, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {item["topologyKey"] for item in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(selects(item["labelSelector"]["matchLabels"]) for item in spread)


def test_the_in_flight_autoscaler_reads_the_gauge_the_server_exports(rendered):
    hpa = manifests.find(rendered["inflight-autoscaling"], "HorizontalPodAutoscaler")
    by_type = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert set(by_type) == {"Resource", "Pods"}, "CPU stays, in flight is added"
    values_file = ROOT / manifests.TARGETS["inflight-autoscaling"] / "prometheus-adapter-values.yaml"
    (rule,) = yaml.safe_load(values_file.read_text())["rules"]["custom"]
    series = re.match(r"([a-z_]+)\{", rule["seriesQuery"]).group(1)
    assert series == metrics.IN_FLIGHT._name, "the adapter asks Prometheus for the server's in-flight gauge"
    assert rule["name"]["as"] == by_type["Pods"]["pods"]["metric"]["name"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}, "per pod, as a Pods metric needs"
    rules_text = values_file.read_text().split("rules:", 1)[1]
    assert rules_text in (ROOT / "docs" / "deploying.md").read_text(), "docs/deploying.md shows the rule as it is"


def test_kserve_runs_the_image_as_a_custom_predictor(rendered):
    service = manifests.find(rendered["kserve"], "InferenceService")
    container = manifests.server_container(service)
    assert container["name"] == "kserve-container" and len(service["spec"]["predictor"]["containers"]) == 1
    assert service["metadata"]["name"] == Settings().default_model, "KServe names the model after it"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert {port["name"] for port in container["ports"]} <= KNATIVE_PORT_NAMES
    env = manifests.environment(container)
    assert not set(env) & KNATIVE_RESERVED, "Knative sets PORT itself to the container port"
    assert env["PROTOCOL"] == "v2"
    infer = [path for path, methods in spec_paths().items()
             if path.startswith("/v2/models/") and path.endswith("/infer") and "post" in methods]
    assert infer, "PROTOCOL=v2 tells KServe the server answers /v2/models/{name}/infer"
    policy = manifests.find(rendered["kserve"], "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": service["metadata"]["name"]}
    assert policy["ingress"] == [{"ports": [{"port": container["ports"][0]["containerPort"], "protocol": "TCP"}]}]


@pytest.mark.parametrize("kind, target", [("InferenceService", "kserve"), ("ServiceMonitor", "monitoring")])
def test_custom_resources_are_held_to_their_crds_strictly(rendered, kind, target):
    resource = manifests.find(rendered[target], kind)
    assert manifests.custom_resource_errors(resource) == []
    misspelt = copy.deepcopy(resource)
    (misspelt["spec"]["predictor"]["containers"][0] if kind == "InferenceService"
     else misspelt["spec"]["endpoints"][0])["imagePullPolice"] = "Always"
    errors = manifests.custom_resource_errors(misspelt)
    assert len(errors) == 1 and "'imagePullPolice' was unexpected" in errors[0], errors

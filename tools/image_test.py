"""Prove the CPU image end to end, without a Docker engine or a registry (``make image-test``).

Follows shared/notes/air-gapped-image-build.md: buildah, podman and debootstrap from Debian
(installed when missing); a python3 base image made with debootstrap and imported (the official
``python:3.11-slim-bookworm`` cannot be pulled here), passed to the unchanged ``Dockerfile`` only
through its BASE_IMAGE build argument, with a quick-training build argument. Then it runs the
built image's own CMD with its own ENV (PORT moved to a free port, as ``docker run -e PORT=``
would), waits for readiness, classifies every sample in var/data over HTTP, checks that the
server runs as the image's non-root user, serves both models trained during this build and the
drawing page. Then it runs the image again as the Kubernetes Deployment runs it
(deploy/kubernetes/overlays/cpu, rendered by kustomize: deploy/manifests.py): `podman run
--read-only` with tmpfs mounts for the Deployment's emptyDir paths only, the Deployment's user,
environment, capabilities (none), memory and CPU limits, and checks that it gets ready, classifies a
sample, serves /metrics and stops gracefully within the pod's grace period. Finally it removes the
containers and images it made.

Settings (environment): MNIST_DATA (IDX files copied into the build context's var/data/mnist/),
IMAGE_EPOCHS (1), IMAGE_MIN_ACCURACY (0.97, the CNN), IMAGE_DENSE_MIN_ACCURACY (0.9, the dense
model), KEEP_BASE_IMAGE=1 (keep the debootstrapped base for the next run).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from deploy import manifests
from tools.readiness import free_port, wait_until_ready, worker_rss_mb

ROOT = Path(__file__).resolve().parent.parent
STORAGE = ["--storage-driver", "vfs"]
BASE_IMAGE = "localhost/mnist-test-base:bookworm"
IMAGE = "localhost/mnist-server:image-test"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, text=True, **kwargs)


def output(*command: str) -> str:
    return run(*command, stdout=subprocess.PIPE).stdout.strip()


def ensure_tools() -> None:
    # runc: `podman run` here needs it (read_only_run); buildah and podman bring crun only.
    missing = [tool for tool in ("buildah", "podman", "debootstrap", "runc") if not shutil.which(tool)]
    if missing:
        step(f"installing {', '.join(missing)} from Debian")
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", "buildah", "podman", "debootstrap", "runc", stdout=subprocess.DEVNULL)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        if path.is_file() and not path.name.endswith(".disabled-by-farm"):
            text = path.read_text(errors="replace")
            found = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or re.search(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+bookworm\b", text, re.M
            )
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", *STORAGE, "image", "exists", name]).returncode == 0


# What Debian's slim images leave out (debuerreotype's slimify), and apt's package cache and lists,
# which a debootstrapped root keeps: python:3.11-slim-bookworm, the Dockerfile's default base, has
# none of them either. The dpkg rules stay in the image, so packages installed later skip them too.
SLIM_DPKG_RULES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""


def slim(rootfs: Path) -> None:
    """Remove from a debootstrapped root what a Debian slim image does not hold."""
    (rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "slim").write_text(SLIM_DPKG_RULES)
    for path in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*"),
                 *rootfs.glob("usr/share/man/*"), *rootfs.glob("usr/share/groff/*"),
                 *rootfs.glob("usr/share/info/*"), *rootfs.glob("usr/share/lintian/*"),
                 *(path for path in rootfs.glob("usr/share/locale/*") if path.name != "locale.alias"),
                 *(path for path in rootfs.glob("usr/share/doc/*/*") if path.name != "copyright")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def ensure_base_image() -> bool:
    """Make the python3 base image with debootstrap unless it exists; True if made now."""
    if image_exists(BASE_IMAGE):
        step(f"base image {BASE_IMAGE} already present")
        return False
    mirror = debian_mirror()
    step(f"debootstrap bookworm (python3, venv) from {mirror}")
    with tempfile.TemporaryDirectory(prefix="mnist-rootfs-") as rootfs:
        # The folder becomes the image's "/": mkdtemp made it 0700, which the image's non-root
        # user cannot enter (its CMD then fails with "permission denied").
        os.chmod(rootfs, 0o755)
        run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
            "bookworm", rootfs, mirror, stdout=subprocess.DEVNULL)
        slim(Path(rootfs))
        files = [path for path in Path(rootfs).rglob("*") if path.is_file() and not path.is_symlink()]
        print(f"base image root: {sum(path.stat().st_size for path in files) / 1e6:.0f} MB", flush=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run("podman", *STORAGE, "import", "-", BASE_IMAGE, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrapped root failed")
    return True


def stage_mnist() -> None:
    """Copy the IDX files into the (git-ignored) build context folder the training step reads."""
    source = os.environ.get("MNIST_DATA")
    if not source:
        return
    target = ROOT / "var" / "data" / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    for gz in Path(source).glob("*-ubyte.gz"):
        shutil.copy(gz, target / gz.name)


MODELS = ("mnist-cnn", "mnist-dense")


def build() -> tuple[dict[str, str], float]:
    """Build the Dockerfile as it is; return each model's sha256 as the training step printed it."""
    epochs = os.environ.get("IMAGE_EPOCHS", "1")
    min_accuracy = os.environ.get("IMAGE_MIN_ACCURACY", "0.97")
    dense_min_accuracy = os.environ.get("IMAGE_DENSE_MIN_ACCURACY", "0.9")
    step(f"building {IMAGE} (EPOCHS={epochs}, MIN_ACCURACY={min_accuracy}, DENSE_MIN_ACCURACY={dense_min_accuracy})")
    command = ["podman", *STORAGE, "build", "--isolation", "chroot", "--network", "host", "--layers=false",
               "--format", "docker",  # the OCI format has no HEALTHCHECK
               "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", f"EPOCHS={epochs}",
               "--build-arg", f"MIN_ACCURACY={min_accuracy}", "--build-arg", f"DENSE_MIN_ACCURACY={dense_min_accuracy}",
               "-t", IMAGE, "-f", "Dockerfile", "."]
    if Path(HOST_CA).is_file():  # a TLS-inspecting proxy's CA for pip, never baked into the image
        command[4:4] = ["-v", f"{HOST_CA}:{HOST_CA}:ro"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    model_sha256 = {}
    for line in process.stdout:
        print(line, end="", flush=True)
        printed = re.match(r"model sha256 ([\w-]+): ([0-9a-f]{64})$", line.strip())
        if printed:
            model_sha256[printed.group(1)] = printed.group(2)
    if process.wait() != 0:
        raise RuntimeError(f"image build failed ({process.returncode})")
    if sorted(model_sha256) != sorted(MODELS):
        raise RuntimeError(f"the build printed the sha256 of {sorted(model_sha256)}, not of {MODELS}")
    return model_sha256, time.monotonic() - started


def listening_pid(port: int) -> int | None:
    """The pid of the process that listens on a local TCP port (gunicorn's master)."""
    found = re.search(rf":{port}\s.*pid=(\d+)", output("ss", "-ltnpH", f"sport = :{port}"))
    return int(found.group(1)) if found else None


def process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


def serve_and_check(model_sha256: dict[str, str]) -> dict[str, float]:
    """Run the image's CMD and check what it serves; return its time to ready and its workers' memory."""
    inspected = json.loads(output("podman", *STORAGE, "image", "inspect", IMAGE))[0]
    config = inspected["Config"]
    command, env, user = config["Cmd"], config.get("Env", []), config.get("User", "")
    print(f"image CMD {command}, USER {user!r}, ENV {env}", flush=True)
    healthcheck = (inspected.get("Healthcheck") or {}).get("Test", [])
    assert any("/health/ready" in part for part in healthcheck), f"no readiness HEALTHCHECK: {healthcheck}"
    port = free_port()
    env = [item for item in env if not item.startswith("PORT=")] + [f"PORT={port}"]
    container = output("buildah", *STORAGE, "from", IMAGE)
    server = None
    try:
        env_args = [arg for item in env for arg in ("--env", item)]
        step(f"running the image's CMD in {container} on port {port}")
        server = subprocess.Popen(
            ["buildah", *STORAGE, "run", "--isolation", "chroot", "--network", "host", *env_args,
             container, "--", *command],
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        seconds = wait_until_ready(base, server, timeout=180)
        print(f"ready {seconds:.1f} s after start", flush=True)

        step("classifying every sample over HTTP")
        samples = sorted((ROOT / "var" / "data").glob("sample-*.png"))
        assert len(samples) == 10, samples
        for path in samples:
            answer = httpx.post(f"{base}/mnist/classify", files={"file": path.read_bytes()}, timeout=30).json()
            expected = int(path.stem.split("-")[1])
            print(f"{path.name}: {answer['digit']} ({answer['confidence']:.3f})", flush=True)
            assert answer["digit"] == expected, (path.name, answer)

        step("checking the user and the model")
        master = listening_pid(port)
        uid = process_uid(master)
        assert uid != 0 and user.split(":")[0] == str(uid), f"server runs as uid {uid}, image USER is {user!r}"
        print(f"server runs as uid {uid} (image USER {user})")
        served = {model["name"]: model for model in httpx.get(f"{base}/models", timeout=10).json()["models"]}
        assert list(served) == list(MODELS), f"the image serves {list(served)}, not {MODELS}"
        for name in MODELS:
            digest = f"import hashlib; print(hashlib.sha256(open('var/data/{name}.keras', 'rb').read()).hexdigest())"
            inside = output("buildah", *STORAGE, "run", "--isolation", "chroot", container, "--",
                            "python3", "-c", digest)
            trained = model_sha256[name]
            assert inside == trained, f"{name} in the image {inside} != trained in the build {trained}"
            print(f"{name} in the image is the one trained in the build: sha256 {inside}, "
                  f"version {served[name]['version']}, test accuracy {served[name]['test_accuracy']}")
        dense = httpx.post(f"{base}/mnist/classify?model=mnist-dense", files={"file": samples[0].read_bytes()},
                           timeout=30).json()
        assert dense["model"] == "mnist-dense" and len(dense["probabilities"]) == 10, dense
        page = httpx.get(f"{base}/", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.status_code
        assert 'id="pad"' in page.text, "GET / is not the drawing page"
        print("the dense model answers ?model=mnist-dense, and GET / serves the drawing page")
        for name in MODELS:
            report = httpx.get(f"{base}/models/{name}/report", timeout=10)
            assert report.status_code == 200 and f"<title>{name}: training report</title>" in report.text, \
                f"GET /models/{name}/report answered {report.status_code}"
        print(f"each model's training report is served ({', '.join(f'/models/{name}/report' for name in MODELS)})")
        leftovers = output("buildah", *STORAGE, "run", "--isolation", "chroot", "--user", "0:0", container, "--",
                           "python3", "-c",
                           "import glob, shutil; print([t for t in ('gcc', 'cc', 'g++') if shutil.which(t)]"
                           " + glob.glob('/root/.cache/pip') + glob.glob('/app/var/data/mnist'))")
        assert leftovers == "[]", f"the image holds build leftovers: {leftovers}"
        print("no compiler, pip cache or training data in the image")
        training_only = output("buildah", *STORAGE, "run", "--isolation", "chroot", container, "--",
                               "/opt/venv/bin/python", "-c",
                               "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'h5py', 'cv2')"
                               " if u.find_spec(m)])")
        assert training_only == "[]", f"the serving image holds training's libraries: {training_only}"
        print("no TensorFlow, Keras, h5py or OpenCV in the image")
        rss = worker_rss_mb(master)
        print(f"worker memory (RSS) after the checks: {', '.join(f'{mb:.0f}' for mb in rss)} MB")
        return {"ready_seconds": seconds, "worker_rss_mb": max(rss)}
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        subprocess.run(["buildah", *STORAGE, "rm", container], stdout=subprocess.DEVNULL)


READ_ONLY_CONTAINER = "mnist-image-test-read-only"
# Inside the running container: which of the image's folders can be written (each should fail with
# EROFS: the root filesystem is read-only), which emptyDir mounts can, who the server (pid 1, the
# image's CMD) runs as, and what the metrics folder holds.
INSIDE = """
import errno, json, os, sys
def attempt(folder):
    try:
        with open(os.path.join(folder, ".image-test"), "w"):
            pass
        os.remove(os.path.join(folder, ".image-test"))
        return "written"
    except OSError as error:
        return errno.errorcode[error.errno]
mounts, metrics_dir = sys.argv[1].split(","), sys.argv[2]
image = [folder for folder in ("/", "/app", "/app/var/data", "/opt/venv", "/var/tmp", "/run", "/etc", "/home")
         if os.path.isdir(folder) and folder not in mounts]
status = open("/proc/1/status").read()
ids = [line.split()[1] for line in status.splitlines() if line.startswith(("Uid:", "Gid:"))]
print(json.dumps({"image": {folder: attempt(folder) for folder in image},
                  "mounts": {folder: attempt(folder) for folder in mounts},
                  "server": ":".join(ids), "metrics_files": len(os.listdir(metrics_dir))}))
"""


def podman_size(quantity: str) -> str:
    """A Kubernetes quantity (64Mi, 2Gi) as podman writes sizes (64m, 2g)."""
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()
    return number + {"Ki": "k", "Mi": "m", "Gi": "g", None: ""}[unit]


def read_only_command(deployment: dict, image: str, port: int) -> list[str]:
    """`podman run` of the image as the Deployment's pod runs it (PORT moved to a free port): the
    root filesystem read-only (and no tmpfs of podman's own on /tmp, /run, /var/tmp), a tmpfs for
    each of its emptyDir mounts only, its user, environment, capabilities (none, no privilege
    escalation), memory and CPU limits, the image's own CMD."""
    pod, container = manifests.pod_spec(deployment), manifests.server_container(deployment)
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]} and "command" not in container and "args" not in container
    env = {**manifests.environment(container), "PORT": str(port)}
    limits = container["resources"]["limits"]
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    return ["podman", *STORAGE,
            # Debian's crun refuses hosts whose cgroups are mounted in hybrid mode, as here; runc runs.
            "--runtime", "runc",
            "run", "--rm", "--name", READ_ONLY_CONTAINER, "--network", "host",
            "--read-only", "--read-only-tmpfs=false",
            *[f"--tmpfs={path}:rw,nosuid,nodev,mode=1777,size={podman_size(volume['sizeLimit'])}"
              for path, volume in manifests.empty_dirs(deployment).items()],
            "--user", f"{context['runAsUser']}:{context['runAsGroup']}",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", podman_size(limits["memory"]), "--cpus", str(limits["cpu"]),
            # podman's own open-files and process limits are above what this sandbox lets a container
            # set ("setrlimit: operation not permitted"): this process's open-files limit, and 4,096
            # processes, far above the server's threads.
            "--ulimit", f"nofile={nofile[0]}:{nofile[1]}", "--ulimit", "nproc=4096:4096",
            # Kubernetes ignores the image's HEALTHCHECK (its probes stand in for it).
            "--no-healthcheck",
            *[arg for name, value in env.items() for arg in ("--env", f"{name}={value}")],
            image]


def read_only_run() -> dict[str, float]:
    """Run the image as deploy/kubernetes/overlays/cpu's Deployment does, read from the rendered
    manifest (so this run and the manifest cannot drift apart), and check that it serves: ready, a
    sample classified, /metrics summing the workers; that nothing of the image is writable and its
    emptyDir mounts are; that it stops gracefully within the pod's grace period."""
    deployment = manifests.workload(manifests.rendered("cpu"))
    container = manifests.server_container(deployment)
    mounts = manifests.empty_dirs(deployment)
    metrics_dir = manifests.environment(container)["PROMETHEUS_MULTIPROC_DIR"]
    grace = manifests.pod_spec(deployment)["terminationGracePeriodSeconds"]
    port = free_port()
    command = read_only_command(deployment, IMAGE, port)
    step(f"running the image read-only, as deploy/kubernetes/overlays/cpu runs it, on port {port}: "
         f"tmpfs on {', '.join(mounts)} only")
    print(" ".join(command), flush=True)
    server = subprocess.Popen(command, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        seconds = wait_until_ready(base, server, timeout=180)
        # From `podman run`, which first copies the image into the container's storage (vfs: in full).
        print(f"ready {seconds:.1f} s after podman run began", flush=True)
        sample = ROOT / "var" / "data" / "sample-7.png"
        answer = httpx.post(f"{base}/mnist/classify", files={"file": sample.read_bytes()}, timeout=30).json()
        assert answer["digit"] == 7, answer
        print(f"{sample.name}: {answer['digit']} ({answer['confidence']:.3f})")
        exposition = httpx.get(f"{base}/metrics", timeout=10)
        assert exposition.status_code == 200, exposition.status_code
        served = 'mnist_http_requests_total{method="POST",route="mnist.classify",status="200"} 1.0'
        assert served in exposition.text, "/metrics does not count the classification"
        print("/metrics counts it (prometheus-client's multiprocess files on the emptyDir's tmpfs)")
        inside = json.loads(output("podman", *STORAGE, "--runtime", "runc", "exec", READ_ONLY_CONTAINER,
                                   "python3", "-c", INSIDE, ",".join(mounts), metrics_dir))
        print(f"inside: {inside}")
        assert inside["image"] and set(inside["image"].values()) == {"EROFS"}, inside["image"]
        assert set(inside["mounts"].values()) == {"written"}, inside["mounts"]
        context = {**manifests.pod_spec(deployment)["securityContext"], **container["securityContext"]}
        user = f"{context['runAsUser']}:{context['runAsGroup']}"
        assert inside["server"] == user, f"the server runs as {inside['server']}, the manifest says {user}"
        assert inside["metrics_files"] > 0, "no metrics files in the emptyDir"
        step(f"podman stop -t {grace} (the pod's terminationGracePeriodSeconds)")
        stopping = time.monotonic()
        run("podman", *STORAGE, "--runtime", "runc", "stop", "-t", str(grace), READ_ONLY_CONTAINER,
            stdout=subprocess.DEVNULL)
        status = server.wait(timeout=grace + 30)
        stopped = time.monotonic() - stopping
        assert status == 0 and stopped < grace, f"exit status {status} after {stopped:.1f} s"
        print(f"stopped gracefully in {stopped:.1f} s (exit status 0), as user {user}")
        return {"read_only_ready_seconds": seconds, "stop_seconds": stopped}
    finally:
        if server.poll() is None:
            subprocess.run(["podman", *STORAGE, "--runtime", "runc", "rm", "--force", READ_ONLY_CONTAINER],
                           stdout=subprocess.DEVNULL)
            server.wait(timeout=30)


def main() -> int:
    ensure_tools()
    made_base = ensure_base_image()
    stage_mnist()
    try:
        model_sha256, seconds = build()
        size = int(json.loads(output("podman", *STORAGE, "image", "inspect", IMAGE))[0]["Size"])
        print(f"\nbuilt {IMAGE} in {seconds:.0f} s; image size {size / 1e6:.0f} MB", flush=True)
        served = serve_and_check(model_sha256)
        read_only = read_only_run()
    finally:
        step("removing what this test made")
        subprocess.run(["podman", *STORAGE, "rmi", "--force", IMAGE], stdout=subprocess.DEVNULL)
        if made_base and os.environ.get("KEEP_BASE_IMAGE") != "1":
            subprocess.run(["podman", *STORAGE, "rmi", "--force", BASE_IMAGE], stdout=subprocess.DEVNULL)
    print(f"\nimage test passed: image size {size / 1e6:.0f} MB, built in {seconds:.0f} s, its CMD ready in "
          f"{served['ready_seconds']:.1f} s, worker RSS at most {served['worker_rss_mb']:.0f} MB; read-only as "
          f"the Deployment runs it: ready {read_only['read_only_ready_seconds']:.1f} s after podman run began, "
          f"stopped gracefully in {read_only['stop_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Deploying the service past one host: Kubernetes manifests (kubernetes/, kustomize), a KServe
InferenceService (kserve/), and the code that renders and checks them (manifests.py, check.py;
`make manifests`). docs/deploying.md says how to use them."""

"""Container and cluster files, checked without a Docker engine or a cluster: linters, schemas, Prefect's own
job-template rendering, and names that must agree across prefect.yaml, docker/ and infra/."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"
TEMPLATE = REPO / "infra" / "k8s" / "gpu-base-job-template.json"
K8S_VERSION = "1.37.0"


def _version() -> str:
    return re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE).group(1)  # type: ignore[union-attr]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_has_both_images_non_root_with_pinned_bases() -> None:
    text = DOCKERFILE.read_text()
    targets = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
    assert {"cpu", "cuda"} <= set(targets)
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base  # a full version, not a moving tag
    assert re.search(r"^USER \$\{VOXBATCH_UID\}", text, re.MULTILINE) and "useradd --uid" in text
    cpu_stage = text.split("AS cpu")[1].split("FROM ")[0]
    assert "download.pytorch.org/whl/cpu" in cpu_stage and "+cpu" in cpu_stage  # no CUDA libraries in the CPU image
    assert "-c constraints.txt" in cpu_stage and "-c constraints.txt" in text.split("AS cuda")[1]
    assert "HEALTHCHECK" in text and 'voxbatch", "doctor' in text
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "!.venv/" not in ignored  # everything is ignored but what the build copies
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE))
    for source in " ".join(copied).split():
        assert f"!{source}" in ignored, source


def test_the_compose_file_matches_the_compose_specification() -> None:
    import jsonschema

    schema = json.loads((REPO / "tests" / "schemas" / "compose-spec.json").read_text())
    jsonschema.validate(_compose(), schema)


def test_the_compose_stack_has_its_services_wired_together() -> None:
    services = _compose()["services"]
    assert {"postgres", "prefect-server", "prefect-setup", "seaweedfs", "worker", "worker-gpu", "voxbatch"} <= set(
        services
    )
    server_db = services["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert server_db.startswith("postgresql+asyncpg://") and "@postgres:5432/" in server_db
    assert services["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["seaweedfs"]["environment"]["S3_BUCKET"] == "voxbatch"
    for name in ("worker", "worker-gpu", "voxbatch"):
        env = services[name]["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
        assert services[name]["env_file"][0]["path"] == ".env"  # secrets from the uncommitted env file
    assert services["worker"]["command"] == ["worker"] and services["worker-gpu"]["command"] == ["worker"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["worker"]["depends_on"]["prefect-setup"]["condition"] == "service_completed_successfully"
    # No secret is written in the compose file: every one is a required variable from docker/.env.
    text = COMPOSE.read_text()
    for secret in ("POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        assert f"${{{secret}:?" in text
    example = (REPO / "docker" / ".env.example").read_text()
    assert all(f"{s}=" in example for s in ("POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"))
    assert "docker/.env" in (REPO / ".gitignore").read_text().splitlines()


def test_the_kubernetes_manifests_validate() -> None:
    result = subprocess.run(
        [
            str(BIN / "kubernetes-validate"),
            "--strict",
            "-k",
            K8S_VERSION,
            *map(str, (REPO / "infra" / "k8s").glob("*.yaml")),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _render(values: dict[str, Any]) -> dict[str, Any]:
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = json.loads(TEMPLATE.read_text())
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values))
    return config.job_manifest


@pytest.mark.usefixtures("prefect_api")  # rendering resolves Prefect variables and blocks through the API
def test_the_gpu_job_template_renders_through_prefect_kubernetes() -> None:
    import kubernetes_validate

    with_gpu = _render({"gpu_limit": 1})
    pod = with_gpu["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert container["volumeMounts"] == [{"name": "model-cache", "mountPath": "/home/voxbatch/.cache"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    kubernetes_validate.validate(with_gpu, K8S_VERSION, strict=True)
    without = _render({})
    assert "nvidia.com/gpu" not in without["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    kubernetes_validate.validate(without, K8S_VERSION, strict=True)


def test_names_agree_across_prefect_yaml_docker_and_infra() -> None:
    version = _version()
    services = _compose()["services"]
    assert services["worker"]["image"] == services["voxbatch"]["image"] == f"voxbatch:{version}-cpu"
    assert services["worker-gpu"]["image"] == f"voxbatch:{version}-cuda"
    template = json.loads(TEMPLATE.read_text())
    variables = template["variables"]["properties"]
    assert variables["image"]["default"] == f"voxbatch:{version}-cuda"
    deployments = {d["name"]: d for d in _prefect_yaml()["deployments"]}
    shard_pool = deployments["voxbatch-shard"]["work_pool"]["name"]
    helm = yaml.safe_load((REPO / "infra" / "helm" / "prefect-worker-values.yaml").read_text())
    assert helm["worker"]["config"]["workPool"] == shard_pool == "voxbatch-gpu"
    assert helm["worker"]["image"]["prefectTag"].startswith("3.8.8-")  # the server's and the pin's version
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3.8.8-")
    dispatch = deployments["voxbatch-run"]["parameters"]["settings"]["run"]["dispatch"]
    assert dispatch == f"voxbatch-shard/{deployments['voxbatch-shard']['name']}"
    assert f"--dispatch {dispatch}" in COMPOSE.read_text()
    setup = " ".join(services["prefect-setup"]["command"])
    assert "voxbatch-cpu" in setup and "voxbatch-gpu" in setup  # the limits flows/serve.py takes slots of
    # The shard job's environment comes from the S3 secret; its keys are the ones voxbatch reads.
    secret = yaml.safe_load((REPO / "infra" / "k8s" / "s3-secret.example.yaml").read_text())
    assert set(secret["stringData"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    }
    assert variables["s3_secret"]["default"] == secret["metadata"]["name"]
    pvc = yaml.safe_load((REPO / "infra" / "k8s" / "model-cache-pvc.yaml").read_text())
    assert variables["model_cache_claim"]["default"] == pvc["metadata"]["name"]
    account = yaml.safe_load((REPO / "infra" / "k8s" / "service-account.yaml").read_text())
    assert variables["service_account_name"]["default"] == account["metadata"]["name"]
    assert variables["namespace"]["default"] == account["metadata"]["namespace"] == pvc["metadata"]["namespace"]
    dockerfile = DOCKERFILE.read_text()
    assert "XDG_CACHE_HOME=/home/voxbatch/.cache" in dockerfile
    uid = int(re.search(r"ARG VOXBATCH_UID=(\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    spec = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsUser"] == uid
    # The bucket policy covers the bucket compose creates, and never allows deleting objects, nor multipart uploads
    # (voxbatch writes with single PUTs: it has none of its own to list or abort).
    policy = json.loads((REPO / "infra" / "s3" / "worker-bucket-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert not any("Delete" in a or "Multipart" in a for a in actions) and "s3:PutObject" in actions
    resources = {
        r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    assert all(r.startswith(f"arn:aws:s3:::{services['seaweedfs']['environment']['S3_BUCKET']}") for r in resources)

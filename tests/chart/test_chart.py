"""
The Helm chart (charts/frontgate), rendered by the real helm, checked object by object.

Each test runs on the default values and on the two worked values files (VALUE_SETS): helm
lint; the pod's security posture (non-root 65532, read-only root filesystem, no capability,
no privilege escalation, RuntimeDefault seccomp, no service-account token but the projected
one); probes on the admin listener's /livez and /readyz; every mount read-only; the config's
listeners and admin address agreeing with the container ports and Services; and the rendered
frontgate.yaml passing `frontgate check` with the files the pod would have (the chart's
ConfigMap and Secrets as the kubelet writes them, stand-ins for Secrets from outside the chart,
the config's mount paths rehomed under a temporary directory). Then the switches: the
checksum annotation follows the config, the ServiceMonitor and dashboard exist only when
enabled, the NetworkPolicy's ports, the projected token, reload.watchFiles, autoscaling,
anti-affinity, existing Secrets, and the schema refusing typos.
"""
import json
import os
import re
import subprocess

import pytest
import yaml

import chartlib
from chartlib import CHART, VALUE_SETS, container, frontgate_config, kinds, one, pod_spec, render

SETS = list(VALUE_SETS)
METRICS = [  # the names the dashboard is drawn from (gateway/metrics.c)
    "frontgate_requests_total", "frontgate_request_duration_seconds",
    "frontgate_upstream_duration_seconds", "frontgate_authentication_attempts_total",
    "frontgate_token_cache_hits_total", "frontgate_token_cache_misses_total",
    "frontgate_config_reloads_total", "frontgate_config_last_reload_success_timestamp_seconds",
    "frontgate_open_connections", "frontgate_build_info",
]


@pytest.fixture(scope="module", params=SETS)
def rendered(request):
    return request.param, render(VALUE_SETS[request.param])


def port_of(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


# ---------------------------------------------------------------------------
# lint and render


@pytest.mark.parametrize("name", SETS)
def test_helm_lint_strict(name):
    args = ["lint", "--strict", CHART]
    for f in VALUE_SETS[name]:
        args += ["-f", f]
    p = chartlib.helm(*args, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 chart(s) failed" in p.stdout


def test_objects_are_named_labelled_and_in_the_release_namespace(rendered):
    name, docs = rendered
    seen = set()
    for d in docs:
        meta = d["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63, meta
        assert (d["kind"], meta["name"]) not in seen, f"two {d['kind']} {meta['name']}"
        seen.add((d["kind"], meta["name"]))
        assert meta["labels"]["app.kubernetes.io/instance"] == chartlib.RELEASE
        assert meta["labels"]["app.kubernetes.io/name"] == "frontgate"
        if d["kind"] != "ClusterRoleBinding":
            assert meta["namespace"] == chartlib.NAMESPACE, (d["kind"], meta)
    kinds_seen = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget"} <= kinds_seen


# ---------------------------------------------------------------------------
# the pod's posture


def test_pod_runs_non_root_read_only_without_capabilities(rendered):
    _, docs = rendered
    spec = pod_spec(docs)
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532 and psc["runAsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(k), k
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("privileged") is False
    assert sc["capabilities"] == {"drop": ["ALL"]}, "no capability added, every one dropped"
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["args"] == ["run", "-c", "/etc/frontgate/frontgate.yaml"]
    assert not c["image"].endswith(":latest") and ":" in c["image"]
    assert "requests" in c["resources"] and c["resources"]["requests"]["cpu"]


def test_every_volume_is_config_secret_or_projected_and_mounted_read_only(rendered):
    _, docs = rendered
    spec = pod_spec(docs)
    for v in spec["volumes"]:
        assert set(v) - {"name"} <= {"configMap", "secret", "projected"}, v
    for m in container(docs)["volumeMounts"]:
        assert m["readOnly"] is True, m
        assert m["mountPath"].startswith(("/etc/frontgate", "/var/run/secrets/frontgate/")), m
        assert "subPath" not in m, "a subPath mount would never see an update"
    assert {m["name"] for m in container(docs)["volumeMounts"]} == {v["name"] for v in spec["volumes"]}


def test_probes_ask_the_admin_listener(rendered):
    _, docs = rendered
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    cfg = frontgate_config(docs)
    host, admin_port = port_of(cfg["admin"]["address"])
    assert host == "0.0.0.0", "the kubelet and Prometheus reach the admin listener from outside the pod"
    assert ports["metrics"] == admin_port
    want = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in want.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path and get["scheme"] == "HTTP", (probe, get)
        assert get["port"] == "metrics", (probe, get)
        assert c[probe]["failureThreshold"] >= 1 and c[probe]["periodSeconds"] >= 1
    # draining: the pod is given more than frontgate's own grace period
    grace = cfg.get("limits", {}).get("shutdownGracePeriod", "30s")
    assert grace.endswith("s")
    assert pod_spec(docs)["terminationGracePeriodSeconds"] > int(grace[:-1])


def test_config_listeners_and_services_agree_with_the_ports(rendered):
    _, docs = rendered
    c = container(docs)
    cfg = frontgate_config(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    listener_ports = [port_of(l["address"])[1] for l in cfg["listeners"]]
    assert all(port_of(l["address"])[0] == "0.0.0.0" for l in cfg["listeners"])
    assert sorted(listener_ports) == sorted(p for n, p in ports.items() if n != "metrics")
    proxy = one(docs, "Service", f"{chartlib.RELEASE}-frontgate")
    metrics = one(docs, "Service", f"{chartlib.RELEASE}-frontgate-metrics")
    assert {p["targetPort"] for p in proxy["spec"]["ports"]} == set(ports) - {"metrics"}
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["metrics"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for svc in (proxy, metrics):
        assert svc["spec"]["selector"] == selector
        assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    for l in cfg["listeners"]:
        if "tls" in l:
            assert l["tls"]["certFile"] == "/etc/frontgate/tls/tls.crt"
            assert l["tls"]["keyFile"] == "/etc/frontgate/tls/tls.key"


def test_rendered_config_passes_frontgate_check_with_the_pods_files(rendered, tmp_path):
    name, docs = rendered
    pr, cfg = chartlib.pod_root(docs, tmp_path)
    p = subprocess.run([chartlib.FRONTGATE_BIN, "check", "-c", cfg], capture_output=True, text=True,
                       timeout=60)
    out = (p.stdout + p.stderr).replace(str(tmp_path), "<pod>")
    assert p.returncode == 0, f"frontgate check of the {name} values:\n{out}"
    assert re.search(r": ok \(", out), out
    # what the chart renders is what was read: the config itself comes from the ConfigMap
    assert "/etc/frontgate/frontgate.yaml" in pr.given


def test_a_config_naming_a_file_no_volume_mounts_is_caught(tmp_path):
    docs = render(sets=["config.authenticators[0].name=api-keys",
                        "config.authenticators[0].staticKeys.file=/etc/elsewhere/keys.txt"])
    with pytest.raises(chartlib.Missing, match="no volume of the pod mounts"):
        chartlib.pod_root(docs, tmp_path)


def test_a_config_naming_a_file_the_charts_secret_lacks_is_caught(tmp_path):
    docs = render(sets=["config.authenticators[0].name=api-keys",
                        "config.authenticators[0].staticKeys.file=/etc/frontgate/secret/other.txt"])
    with pytest.raises(chartlib.Missing, match="does not hold"):
        chartlib.pod_root(docs, tmp_path)


# ---------------------------------------------------------------------------
# switches


def checksums(docs):
    return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_checksum_annotation_follows_the_config_and_the_charts_secret():
    base = checksums(render())
    assert re.fullmatch(r"[0-9a-f]{64}", base["checksum/config"])
    assert checksums(render()) == base, "the same values give the same checksums"
    debug = checksums(render(sets=["config.log.level=debug"]))
    assert debug["checksum/config"] != base["checksum/config"]
    port = checksums(render(sets=["metrics.port=9191"]))
    assert port["checksum/config"] != base["checksum/config"], "admin address is config too"
    assert checksums(render(sets=["replicaCount=5"]))["checksum/config"] == base["checksum/config"]
    key = checksums(render(sets=["secret.files.keys\\.txt=# another\\n"]))
    assert key["checksum/secret"] != base["checksum/secret"]
    assert key["checksum/config"] == base["checksum/config"]
    # a Secret from outside the chart is not the chart's to checksum
    ext = checksums(render(sets=["secret.existingSecret=mine"]))
    assert "checksum/secret" not in ext


def test_service_monitor_only_when_enabled():
    assert not kinds(render(), "ServiceMonitor")
    docs = render(sets=["metrics.serviceMonitor.enabled=true",
                        "metrics.serviceMonitor.labels.release=prometheus"])
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "metrics" and ep["path"] == "/metrics"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [chartlib.NAMESPACE]}
    # it selects the metrics Service and not the proxy Service
    sel = sm["spec"]["selector"]["matchLabels"]
    matched = [s["metadata"]["name"] for s in kinds(docs, "Service")
               if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
    assert matched == [f"{chartlib.RELEASE}-frontgate-metrics"]
    p = chartlib.helm(*chartlib.template_args(sets=["metrics.serviceMonitor.enabled=true",
                                                    "metrics.service.enabled=false"]), check=False)
    assert p.returncode != 0 and "metrics.service.enabled" in p.stderr


def test_network_policy_ports():
    assert not kinds(render(), "NetworkPolicy")
    docs = render(sets=["networkPolicy.enabled=true"])
    np = one(docs, "NetworkPolicy")
    spec = np["spec"]
    assert spec["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"], "egress is open unless networkPolicy.egress.enabled"
    proxy_rule, metrics_rule = spec["ingress"]
    assert [p["port"] for p in proxy_rule["ports"]] == [8080]
    assert "from" not in proxy_rule, "the proxy port is open to anyone by default"
    assert [p["port"] for p in metrics_rule["ports"]] == [9090]
    (peer,) = metrics_rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert peer["podSelector"] == {}
    # configured: the proxy port from one namespace, metrics from labelled pods, egress on
    docs = render(sets=["networkPolicy.enabled=true", "metrics.port=9300",
                        "networkPolicy.proxyFrom[0].namespaceSelector.matchLabels.team=a",
                        "networkPolicy.metricsFrom.podSelector.matchLabels.app=prom",
                        "networkPolicy.egress.enabled=true"])
    spec = one(docs, "NetworkPolicy")["spec"]
    proxy_rule, metrics_rule = spec["ingress"]
    assert proxy_rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]
    assert [p["port"] for p in metrics_rule["ports"]] == [9300]
    assert metrics_rule["from"][0]["podSelector"] == {"matchLabels": {"app": "prom"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"] == [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]


def test_network_policy_of_the_examples_opens_each_listener():
    for name in ("kcp", "iceberg"):
        docs = render(VALUE_SETS[name])
        spec = one(docs, "NetworkPolicy")["spec"]
        cfg = frontgate_config(docs)
        assert [p["port"] for p in spec["ingress"][0]["ports"]] == \
            [port_of(l["address"])[1] for l in cfg["listeners"]]
        assert [p["port"] for p in spec["ingress"][1]["ports"]] == [port_of(cfg["admin"]["address"])[1]]


def test_reload_watch_files_is_rendered_into_the_config_only_when_set():
    assert "reload" not in frontgate_config(render())
    assert frontgate_config(render(sets=["reload.watchFiles=true"]))["reload"] == {"watchFiles": True}


def test_reload_watch_files_config_passes_frontgate_check(tmp_path):
    pr, cfg = chartlib.pod_root(render(sets=["reload.watchFiles=true"]), tmp_path)
    p = subprocess.run([chartlib.FRONTGATE_BIN, "check", "-c", cfg], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).replace(str(tmp_path), "<pod>")


def test_projected_service_account_token():
    docs = render()
    assert "sa-token" not in {v["name"] for v in pod_spec(docs)["volumes"]}
    docs = render(sets=["serviceAccountToken.enabled=true", "serviceAccountToken.audience=https://kcp.default.svc",
                        "serviceAccountToken.expirationSeconds=7200"])
    (vol,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "sa-token"]
    tok, ca = vol["projected"]["sources"]
    assert tok["serviceAccountToken"] == {"path": "token", "expirationSeconds": 7200,
                                          "audience": "https://kcp.default.svc"}
    assert ca["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    (m,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "sa-token"]
    assert m == {"name": "sa-token", "mountPath": "/var/run/secrets/frontgate/serviceaccount", "readOnly": True}
    # no audience: the API server's own (the field is left out)
    docs = render(sets=["serviceAccountToken.enabled=true"])
    (vol,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "sa-token"]
    assert "audience" not in vol["projected"]["sources"][0]["serviceAccountToken"]


def test_pdb_and_autoscaler():
    docs = render()
    dep = one(docs, "Deployment")
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}
    assert dep["spec"]["replicas"] == 2 and not kinds(docs, "HorizontalPodAutoscaler")
    assert one(render(sets=["podDisruptionBudget.minAvailable=2"]), "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    docs = render(sets=["autoscaling.enabled=true", "autoscaling.maxReplicas=7"])
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": one(docs, "Deployment")["metadata"]["name"]}
    assert hpa["spec"]["maxReplicas"] == 7 and hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in one(docs, "Deployment")["spec"], "the autoscaler owns replicas"


def test_anti_affinity_preferred_by_default():
    docs = render()
    sel = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    aff = pod_spec(docs)["affinity"]["podAntiAffinity"]
    (term,) = aff["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == sel
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in aff
    hard = pod_spec(render(sets=["podAntiAffinity=hard"]))["affinity"]["podAntiAffinity"]
    assert list(hard) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    assert "affinity" not in pod_spec(render(sets=["podAntiAffinity=none"]))


def test_resource_limits_only_when_set():
    c = container(render())
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert not c["resources"].get("limits")
    c = container(render(sets=["resources.limits.memory=512Mi"]))
    assert c["resources"]["limits"] == {"memory": "512Mi"}


def test_tls_listener_from_an_existing_secret_or_the_charts():
    sets = ["listeners[0].name=https", "listeners[0].port=8443", "listeners[0].servicePort=443",
            "listeners[0].tls=true"]
    p = chartlib.helm(*chartlib.template_args(sets=sets), check=False)
    assert p.returncode != 0 and "tls.existingSecret" in p.stderr, "TLS without a certificate is refused"
    docs = render(sets=sets + ["tls.existingSecret=serving", "listeners[0].clientCA=true"])
    (vol,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "tls"]
    assert vol["secret"]["secretName"] == "serving"
    assert not [s for s in kinds(docs, "Secret") if s["type"] == "kubernetes.io/tls"]
    (l,) = frontgate_config(docs)["listeners"]
    assert l["tls"]["clientCAFile"] == "/etc/frontgate/tls/ca.crt"
    docs = render(sets=sets + ["tls.cert=CERT", "tls.key=KEY"])
    (s,) = [s for s in kinds(docs, "Secret") if s["type"] == "kubernetes.io/tls"]
    assert set(s["data"]) == {"tls.crt", "tls.key"}
    assert "checksum/secret" in checksums(docs)


def test_existing_files_secret_replaces_the_charts():
    docs = render(sets=["secret.existingSecret=my-files"])
    assert not [s for s in kinds(docs, "Secret") if s["type"] == "Opaque"]
    (vol,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "files"]
    assert vol["secret"]["secretName"] == "my-files"
    assert vol["secret"]["defaultMode"] == 0o440


def test_dashboard_only_when_enabled_and_drawn_from_frontgates_metrics():
    assert not [c for c in kinds(render(), "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    docs = render(sets=["dashboard.enabled=true"])
    cm = one(docs, "ConfigMap", f"{chartlib.RELEASE}-frontgate-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["frontgate.json"])
    assert dash["uid"] == "frontgate"
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\bfrontgate_[a-z_]+", e))
    base = {re.sub(r"_(bucket|count|sum)$", "", m) for m in used}
    assert base <= set(METRICS), f"the dashboard names metrics frontgate has not: {base - set(METRICS)}"
    assert set(METRICS) <= base, f"metrics the dashboard does not show: {set(METRICS) - base}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("sets,message", [
    (["replicaCont=3"], "replicaCont"),
    (["config.listeners[0].address=0.0.0.0:1"], "listeners"),
    (["config.admin.address=0.0.0.0:1"], "admin"),
    (["config.logg.level=debug"], "logg"),
    (["metrics.serviceMonitor.enable=true"], "enable"),
    (["podAntiAffinity=sometimes"], "podAntiAffinity"),
    (["listeners[0].tsl=true"], "tsl"),
    (["extraSecretMounts[0].name=config", "extraSecretMounts[0].secretName=x",
      "extraSecretMounts[0].mountPath=/etc/frontgate/x"], "extraSecretMounts"),
    (["configFiles.frontgate\\.yaml=x"], "frontgate.yaml"),
])
def test_schema_refuses_typos_and_what_the_chart_owns(sets, message):
    p = chartlib.helm(*chartlib.template_args(sets=sets), check=False)
    assert p.returncode != 0, f"{sets} rendered"
    assert message in p.stderr, p.stderr


def test_two_listeners_on_one_port_are_refused():
    p = chartlib.helm(*chartlib.template_args(sets=["listeners[0].name=a", "listeners[0].port=9090",
                                                    "listeners[0].servicePort=80"]), check=False)
    assert p.returncode != 0 and "metrics.port" in p.stderr


def test_notes_name_the_services_and_warn_of_plaintext():
    p = chartlib.helm("install", chartlib.RELEASE, CHART, "--namespace", chartlib.NAMESPACE,
                      "--dry-run=client", check=False)
    assert p.returncode == 0, p.stderr
    notes = p.stdout.split("NOTES:", 1)[1]
    assert f"svc/{chartlib.RELEASE}-frontgate" in notes
    assert "WARNING: every listener is plaintext" in notes
    assert "holds no key yet" in notes

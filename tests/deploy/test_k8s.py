"""deploy/k8s/: every manifest parses, the objects point at each other correctly (selectors,
ports, volumes, the Secret and ConfigMap), and the workers' configuration — the ConfigMap's
TOML plus the StatefulSet's environment — validates with streams.config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from streams.config import Config
from tests.deploy.manifests import (
    DEPLOY,
    DOCKERFILE,
    EXAMPLE_CONFIG,
    K8S,
    Dockerfile,
    config_for,
    image_env,
    load_yaml,
    load_yaml_all,
    unknown_env,
)

API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "StatefulSet": "apps/v1",
    "Deployment": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization, by kind; a second object of a kind (the console's
    Service) as ``Kind/name``."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    out: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in load_yaml_all(K8S / name):
            key = doc["kind"] if doc["kind"] not in out else (
                f"{doc['kind']}/{doc['metadata']['name']}")
            assert key not in out, f"second {key} in {name}"
            out[key] = doc
    return out


@pytest.fixture(scope="module")
def pod(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objects["StatefulSet"]["spec"]["template"]


@pytest.fixture(scope="module")
def worker(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "worker"]
    return container


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _secret_value(key: str) -> str:
    """A plausible stand-in for a value Kubernetes reads from a Secret at run time."""
    return "https://hooks.example.invalid/x" if "URL" in key else "s3cr3t-from-kubernetes"


def _env(container: dict[str, Any], secrets: bool = False) -> dict[str, str]:
    """The container's environment over the image's; Secret-backed variables only with
    ``secrets`` (the shipped Secret is empty, so by default they are absent)."""
    out = image_env()
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
        elif secrets:
            out[e["name"]] = _secret_value(e["valueFrom"]["secretKeyRef"]["key"])
    return out


# Read only by the console pod (console.yaml), not by the workers.
CONSOLE_SECRETS = {"DISTILLWATCH_CONSOLE__SESSION_SECRET"}
# Not SecretStr fields, but they hold credentials: the store URL has the database password,
# the users list the password hashes. The console pod takes them from the Secret too.
CONSOLE_CREDENTIALS = {"DISTILLWATCH_STORE__URL", "DISTILLWATCH_CONSOLE__USERS"}


def _secret_fields() -> set[str]:
    """DISTILLWATCH_* names of every SecretStr field of the Config."""
    out = set()
    for section, sec_field in Config.model_fields.items():
        model = sec_field.annotation
        assert model is not None
        for name, f in model.model_fields.items():
            if "SecretStr" in str(f.annotation):
                out.add(f"DISTILLWATCH_{section.upper()}__{name.upper()}")
    return out


def _config_file(
    objects: dict[str, dict[str, Any]], pod: dict[str, Any], container: dict[str, Any],
    tmp: Path,
) -> Path:
    """Write the ConfigMap key that ``container`` sees at DISTILLWATCH_CONFIG to ``tmp``."""
    path = _env(container)["DISTILLWATCH_CONFIG"]
    mount = next(
        m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
    )
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    cm_ref = volume["configMap"]
    assert cm_ref["name"] == objects["ConfigMap"]["metadata"]["name"]
    rel = path.removeprefix(mount["mountPath"].rstrip("/") + "/")
    key = next((i["key"] for i in cm_ref.get("items", []) if i["path"] == rel), rel)
    text = objects["ConfigMap"]["data"][key]
    out = tmp / "config.toml"
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def cfg(
    objects: dict[str, dict[str, Any]],
    pod: dict[str, Any],
    worker: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Config:
    toml = _config_file(objects, pod, worker, tmp_path_factory.mktemp("k8s"))
    return config_for(_env(worker), toml)


def test_every_manifest_is_in_the_kustomization() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_objects_are_well_formed(objects: dict[str, dict[str, Any]]) -> None:
    assert {o["kind"] for o in objects.values()} == set(API_VERSIONS)
    for obj in objects.values():
        assert obj["apiVersion"] == API_VERSIONS[obj["kind"]]
        name = obj["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


def test_statefulset_selects_its_pods_and_has_a_governing_service(
    objects: dict[str, dict[str, Any]], pod: dict[str, Any]
) -> None:
    sts = objects["StatefulSet"]["spec"]
    labels = pod["metadata"]["labels"]
    assert _matches(sts["selector"]["matchLabels"], labels)
    svc = objects["Service"]
    assert sts["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None", "a StatefulSet's service must be headless"
    assert _matches(svc["spec"]["selector"], labels)
    assert _matches(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], labels)


def test_metrics_port_is_the_configured_one_everywhere(
    objects: dict[str, dict[str, Any]], worker: dict[str, Any], cfg: Config
) -> None:
    assert cfg.metrics.host == "0.0.0.0", "probes and Prometheus cannot reach 127.0.0.1"
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports["metrics"] == cfg.metrics.port
    (svc_port,) = objects["Service"]["spec"]["ports"]
    target = svc_port["targetPort"]
    assert ports.get(target, target) == cfg.metrics.port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] == "/metrics"
        assert ports.get(get["port"], get["port"]) == cfg.metrics.port


def test_servicemonitor_scrapes_the_service_as_the_rules_expect(
    objects: dict[str, dict[str, Any]],
) -> None:
    sm = objects["ServiceMonitor"]["spec"]
    svc = objects["Service"]
    assert _matches(sm["selector"]["matchLabels"], svc["metadata"]["labels"])
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    for ep in sm["endpoints"]:
        assert ep["port"] in port_names and ep.get("path", "/metrics") == "/metrics"
    # Prometheus Operator names the job after the Service label jobLabel names (else after
    # the Service); the alert rules select that job.
    job = svc["metadata"]["labels"][sm["jobLabel"]] if "jobLabel" in sm else svc["metadata"]["name"]
    rules = "\n".join(p.read_text() for p in (DEPLOY / "prometheus" / "rules").glob("*.yml"))
    selected = set(re.findall(r'job="([^"]+)"', rules))
    assert selected, "the alert rules select no job"
    assert selected == {job}


def test_state_lives_on_a_persistent_volume(
    objects: dict[str, dict[str, Any]], worker: dict[str, Any], cfg: Config
) -> None:
    sts = objects["StatefulSet"]["spec"]
    claims = {c["metadata"]["name"]: c for c in sts["volumeClaimTemplates"]}
    mount = next(m for m in worker["volumeMounts"] if m["mountPath"] == cfg.worker.data_dir)
    assert mount["name"] in claims, "worker.data_dir is not on the PersistentVolumeClaim"
    assert claims[mount["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not mount.get("readOnly")


def test_replicas_fit_the_partitions(objects: dict[str, dict[str, Any]], cfg: Config) -> None:
    replicas = objects["StatefulSet"]["spec"]["replicas"]
    assert 2 <= replicas <= cfg.topics.partitions
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] < replicas


def test_configmap_agrees_with_the_example_config(cfg: Config) -> None:
    example = config_for({}, EXAMPLE_CONFIG)
    # Same topics and detection settings as compose; only where Kafka lives differs.
    assert cfg.topics == example.topics
    assert cfg.windows == example.windows and cfg.detection == example.detection
    assert cfg.worker.app_id == example.worker.app_id


def test_secret_keys_are_config_fields(
    objects: dict[str, dict[str, Any]], worker: dict[str, Any]
) -> None:
    secret = objects["Secret"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in worker["env"] if "valueFrom" in e]
    assert refs, "the workers read no Secret"
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"]
        # Optional: an absent key leaves that sink off instead of blocking the pod.
        assert ref.get("optional") is True
    keys = [r["key"] for r in refs] + list(secret.get("stringData") or {})
    assert unknown_env(dict.fromkeys(keys, "x")) == []
    from_secret = {e["name"] for e in worker["env"] if "valueFrom" in e}
    for e in worker["env"]:
        if "valueFrom" in e:
            assert e["name"] == e["valueFrom"]["secretKeyRef"]["key"]
    # Every credential field can be set from the Secret, and nothing else comes from it
    # (a non-secret there would be hidden from reviewers for no reason).
    assert from_secret == _secret_fields() - CONSOLE_SECRETS


def test_config_validates_with_every_secret_set(
    objects: dict[str, dict[str, Any]], pod: dict[str, Any], worker: dict[str, Any],
    tmp_path: Path,
) -> None:
    toml = _config_file(objects, pod, worker, tmp_path)
    cfg = config_for(_env(worker, secrets=True), toml)
    for name in _secret_fields() - CONSOLE_SECRETS:
        section, field = name.removeprefix("DISTILLWATCH_").lower().split("__")
        assert getattr(getattr(cfg, section), field), f"{name} did not reach the config"
    # Masked when the effective config is printed.
    assert "s3cr3t" not in str(cfg.masked())


def test_every_distillwatch_variable_is_a_config_field(pod: dict[str, Any]) -> None:
    for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
        assert unknown_env(_env(c)) == [], c["name"]


def test_topics_init_runs_the_script_the_image_ships(
    objects: dict[str, dict[str, Any]],
    pod: dict[str, Any],
    worker: dict[str, Any],
    cfg: Config,
    tmp_path: Path,
) -> None:
    (init,) = pod["spec"]["initContainers"]
    assert init["image"] == worker["image"]
    script = init["command"][-1]
    shipped = {dest for _srcs, dest, _ in Dockerfile.read(DOCKERFILE).copies()}
    assert script in shipped
    init_cfg = config_for(_env(init), _config_file(objects, pod, init, tmp_path))
    assert init_cfg.topics == cfg.topics and init_cfg.broker == cfg.broker
    assert "--no-create-topics" in worker["args"]
    kust = load_yaml(K8S / "kustomization.yaml")
    assert worker["image"] in {i["name"] for i in kust.get("images", [])}


def test_replayable_history_is_not_rejected_as_too_old(pod: dict[str, Any], cfg: Config) -> None:
    (init,) = pod["spec"]["initContainers"]
    retention_ms = int(_env(init)["TOPICS_REQUESTS_RETENTION_MS"])
    assert cfg.validation.max_past_s * 1000 > retention_ms


def test_pods_run_as_the_images_non_root_user(pod: dict[str, Any]) -> None:
    df = Dockerfile.read(DOCKERFILE)
    uid, _, gid = df.expand(df.final_stage("USER")[-1]).partition(":")
    sec = pod["spec"]["securityContext"]
    assert sec["runAsNonRoot"] is True
    assert (str(sec["runAsUser"]), str(sec["fsGroup"])) == (uid, gid)
    for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        csec = c["securityContext"]
        assert csec["allowPrivilegeEscalation"] is False
        assert csec["readOnlyRootFilesystem"] is True
        # A read-only root is only safe if every path the worker writes is a volume.
        if c["name"] == "worker":
            mounted = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounted


def test_files_named_by_the_config_come_from_the_configmap(
    objects: dict[str, dict[str, Any]], pod: dict[str, Any], worker: dict[str, Any],
    tmp_path: Path,
) -> None:
    from streams.sinks.policy import load_policy

    env = _env(worker)
    files = {k: v for k, v in env.items() if k.lower().endswith("_file")}
    assert "DISTILLWATCH_SINKS__POLICY_FILE" in files
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for key, path in files.items():
        mount = next(
            m for m in worker["volumeMounts"]
            if path.startswith(m["mountPath"].rstrip("/") + "/")
        )
        cm_ref = volumes[mount["name"]]["configMap"]
        rel = path.removeprefix(mount["mountPath"].rstrip("/") + "/")
        items = {i["path"]: i["key"] for i in cm_ref.get("items", [])}
        assert rel in items or not items, f"{key}: {rel} is not projected from the ConfigMap"
        text = objects["ConfigMap"]["data"][items.get(rel, rel)]
        if key == "DISTILLWATCH_SINKS__POLICY_FILE":
            out = tmp_path / "policy.toml"
            out.write_text(text)
            assert load_policy(out).dry_run is True
            assert text == (DEPLOY / "policy.example.toml").read_text()


# ------------------------------------------------------------------ store and console pod


@pytest.fixture(scope="module")
def console_pod(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objects["Deployment"]["spec"]["template"]


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in pod["spec"]["containers"] if c["name"] == name]
    return c


def _console_secret_env(container: dict[str, Any]) -> dict[str, str]:
    """Secret-backed variables with plausible values (what a filled-in Secret gives)."""
    values = {
        "DISTILLWATCH_STORE__URL": "postgresql://distillwatch:pw@postgres.db.svc/distillwatch",
        "DISTILLWATCH_CONSOLE__USERS": '[{"name": "alice", "role": "approver", '
                                       '"password_hash": "scrypt$16384$8$1$c2FsdA$aGFzaA"}]',
    }
    out = _env(container)
    for e in container["env"]:
        if "valueFrom" in e:
            key = e["valueFrom"]["secretKeyRef"]["key"]
            out[e["name"]] = values.get(key, _secret_value(key))
    return out


def test_console_pod_runs_the_store_and_the_console(console_pod: dict[str, Any]) -> None:
    store, console = _container(console_pod, "store"), _container(console_pod, "console")
    assert store["args"] == ["store"]
    # The store container consumes; a second consumer in the console would be redundant.
    assert console["args"] == ["console", "--no-store"]
    assert console_pod["metadata"]["labels"]["app.kubernetes.io/component"] == "console"


def test_console_config_validates_and_uses_postgresql(
    objects: dict[str, dict[str, Any]], console_pod: dict[str, Any], tmp_path: Path,
) -> None:
    for name in ("store", "console"):
        c = _container(console_pod, name)
        assert unknown_env(_env(c)) == [], name
        toml = _config_file(objects, console_pod, c, tmp_path)
        cfg = config_for(_console_secret_env(c), toml)
        assert cfg.store.url and cfg.store.url.startswith("postgresql://"), name
        assert cfg.worker.record_secret is not None, f"{name}: would reject every record"
        assert cfg.console.session_secret is not None
        assert [u.role for u in cfg.console.users] == ["approver"]
        assert "pw@" not in str(cfg.masked()) and "s3cr3t" not in str(cfg.masked())
        # Without the Secret's values the console would start on SQLite in an emptyDir and
        # a random record key: the store URL and the record key are required, not optional.
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        for required in ("DISTILLWATCH_STORE__URL", "DISTILLWATCH_WORKER__RECORD_SECRET",
                         "DISTILLWATCH_CONSOLE__SESSION_SECRET"):
            assert refs[required].get("optional") is not True, (name, required)


def test_console_credentials_come_only_from_the_secret(
    objects: dict[str, dict[str, Any]], console_pod: dict[str, Any],
) -> None:
    secret = objects["Secret"]["metadata"]["name"]
    for c in console_pod["spec"]["containers"]:
        plain = {e["name"] for e in c["env"] if "value" in e}
        from_secret = {e["name"] for e in c["env"] if "valueFrom" in e}
        assert not plain & (_secret_fields() | CONSOLE_CREDENTIALS), c["name"]
        assert from_secret >= CONSOLE_SECRETS | CONSOLE_CREDENTIALS, c["name"]
        for e in c["env"]:
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret and ref["key"] == e["name"]
    # The Secret's comment documents every key the console pod reads.
    text = (K8S / "secret.yaml").read_text()
    for key in CONSOLE_SECRETS | CONSOLE_CREDENTIALS:
        assert key in text


def test_console_service_is_cluster_internal_and_reaches_the_console(
    objects: dict[str, dict[str, Any]], console_pod: dict[str, Any], tmp_path: Path,
) -> None:
    svc = objects["Service/distillwatch-console"]
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert "externalIPs" not in svc["spec"] and "nodePort" not in str(svc)
    labels = console_pod["metadata"]["labels"]
    assert _matches(svc["spec"]["selector"], labels)
    assert _matches(objects["Deployment"]["spec"]["selector"]["matchLabels"], labels)
    # The worker Service, PDB and ServiceMonitor do not pick up the console pod.
    assert not _matches(objects["Service"]["spec"]["selector"], labels)
    assert not _matches(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                        labels)
    console = _container(console_pod, "console")
    cfg = config_for(_console_secret_env(console),
                     _config_file(objects, console_pod, console, tmp_path))
    ports = {p["name"]: p["containerPort"] for p in console["ports"]}
    assert ports["http"] == cfg.console.port
    (sp,) = svc["spec"]["ports"]
    assert ports.get(sp["targetPort"], sp["targetPort"]) == cfg.console.port
    # Reachable by the Service inside the pod network (the Service is what stays internal).
    assert cfg.console.host == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe"):
        assert console[probe]["httpGet"]["path"] == "/healthz"
    # Slack links the console's pages: public_url is an absolute https URL.
    assert cfg.console.public_url and cfg.console.public_url.startswith("https://")


def test_console_pod_is_locked_down_like_the_workers(console_pod: dict[str, Any]) -> None:
    df = Dockerfile.read(DOCKERFILE)
    uid, _, gid = df.expand(df.final_stage("USER")[-1]).partition(":")
    sec = console_pod["spec"]["securityContext"]
    assert sec["runAsNonRoot"] is True
    assert (str(sec["runAsUser"]), str(sec["fsGroup"])) == (uid, gid)
    for c in console_pod["spec"]["containers"]:
        csec = c["securityContext"]
        assert csec["allowPrivilegeEscalation"] is False
        assert csec["readOnlyRootFilesystem"] is True
        mounted = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/tmp", "/var/lib/distillwatch"} <= mounted, c["name"]

"""SASL/ACL deployment examples: deploy/docker-compose.sasl.yml and deploy/k8s-sasl/.

Tansu has no SASL, so nothing here connects: the override and the overlay are checked for
what would break or weaken them — the workers' effective configuration must validate and
turn into SASL client settings, every container of the image must get them, and the ACLs
must give the gateway `requests` only, the workers every internal topic, readers `alerts`."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streams.config import Config
from streams.kafka_security import client_kwargs
from streams.sinks.ledger import ledger_topic
from streams.state import changelog_topic
from tests.deploy.manifests import (
    COMPOSE,
    DEPLOY,
    EXAMPLE_CONFIG,
    compose_env,
    config_for,
    image_env,
    interpolate,
    load_yaml,
    load_yaml_all,
)

SASL_COMPOSE = DEPLOY / "docker-compose.sasl.yml"
OVERLAY = DEPLOY / "k8s-sasl"
TOPICS = Config().topics
INTERNAL = [t for t in TOPICS.all() if t != TOPICS.requests]
APP_ID = Config().worker.app_id


def _required(text: str) -> str:
    """Compose's ``${VAR:?message}`` with VAR set (the override requires every password)."""
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"value-of-\1", text)


def _with_files(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """Point *_FILE settings at real files, as the mounted secrets would be."""
    out = dict(env)
    for k in env:
        if k.endswith("_PASSWORD_FILE"):
            p = tmp / "password"
            p.write_text("pw\n")
            out[k] = str(p)
        elif k.endswith("_SSL_CAFILE"):
            out[k] = ssl.get_default_verify_paths().cafile or ""
            if not out[k]:
                pytest.skip("no system CA bundle to stand in for the cluster CA")
    return out


def _assert_sasl(cfg: Config, protocol: str) -> None:
    kw = client_kwargs(cfg.broker)
    assert kw["security_protocol"] == protocol
    assert kw["sasl_mechanism"].startswith("SCRAM-")
    assert kw["sasl_plain_username"] == "distillwatch-worker" and kw["sasl_plain_password"]


# --- docker compose override -------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl() -> dict[str, Any]:
    return load_yaml(SASL_COMPOSE)


def test_compose_override_workers_and_topics_init_authenticate(sasl, tmp_path):
    base = load_yaml(COMPOSE)["services"]
    image_services = [n for n, s in base.items()
                      if str(s.get("image", "")).startswith("distillwatch:")
                      and "traffic" not in s.get("profiles", [])]
    assert image_services, "expected distillwatch services in the base compose file"
    for name in image_services:
        # Every distillwatch container that talks to Kafka must get the SASL settings...
        assert name in sasl["services"], f"{name} would connect without SASL"
        over = sasl["services"][name]
        # ${VAR:-default} of the base file as compose resolves it with VAR unset.
        env = {**image_env(), **{k: interpolate(v) for k, v in compose_env(base[name]).items()},
               **{k: _required(v) for k, v in compose_env(over).items()}}
        cfg = config_for(_with_files(env, tmp_path), EXAMPLE_CONFIG)
        _assert_sasl(cfg, "SASL_PLAINTEXT")
        # ...and start only after the users and ACLs exist.
        assert over["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"


def test_compose_override_kafka_has_no_anonymous_client_listener(sasl):
    env = compose_env(sasl["services"]["kafka"])
    listeners = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners["INTERNAL"].startswith("SASL_") and listeners["EXTERNAL"].startswith("SASL_")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert "StandardAuthorizer" in env["KAFKA_AUTHORIZER_CLASS_NAME"]
    # The controller listener (anonymous, a super user) must not be published.
    base_kafka = load_yaml(COMPOSE)["services"]["kafka"]
    assert all("9093" not in str(p) for p in base_kafka.get("ports", []))
    assert "PLAIN" not in env["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"].split(",")


def _acl_grants(script: str) -> list[tuple[str, set[str], str, str]]:
    """(principal, operations, resource type, name) for each `acl ...` line of the script."""
    out = []
    for line in script.splitlines():
        line = line.strip()
        if not line.startswith("acl --allow-principal"):
            continue
        words = line.replace('"$$t"', "$t").split()
        principal = words[words.index("--allow-principal") + 1].removeprefix("User:")
        ops = {words[i + 1] for i, w in enumerate(words) if w == "--operation"}
        kind = "topic" if "--topic" in words else "group"
        name = words[words.index(f"--{kind}") + 1]
        out.append((principal, ops, kind, name))
    return out


def test_compose_acls_least_privilege(sasl):
    script = sasl["services"]["kafka-acls"]["command"][0]
    grants = _acl_grants(script)
    loop = re.search(r"for t in ([^;]+);", script)
    assert loop is not None
    looped = loop.group(1).split()
    expanded = []
    for p, ops, kind, name in grants:
        names = looped if name == "$t" else [name]
        expanded += [(p, ops, kind, n) for n in names]
    gateway = [(k, n, ops) for p, ops, k, n in expanded if p == "gateway"]
    assert gateway == [("topic", TOPICS.requests, {"Write", "Describe"})]
    worker = {(k, n): ops for p, ops, k, n in expanded if p == "distillwatch-worker"}
    assert "Write" not in worker[("topic", TOPICS.requests)]
    for t in INTERNAL:
        assert {"Read", "Write"} <= worker[("topic", t)], t
    prefix = f"{APP_ID}-"
    assert changelog_topic(APP_ID).startswith(prefix) and ledger_topic(APP_ID).startswith(prefix)
    assert {"Read", "Write", "Create"} <= worker[("topic", prefix)]
    assert ("group", APP_ID) in worker
    reader = [(k, n, ops) for p, ops, k, n in expanded if p == "alert-reader"]
    assert ("topic", TOPICS.alerts, {"Read", "Describe"}) in reader
    assert all(n in (TOPICS.alerts, "alert-reader") for _, n, _ in reader)
    for user in ("distillwatch-worker", "gateway", "alert-reader"):
        assert f"user {user} " in script


# --- Kubernetes overlay -----------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    import yaml

    return [d for d in yaml.safe_load_all(out) if d]


def test_k8s_overlay_every_container_authenticates(rendered, tmp_path):
    sts = next(o for o in rendered if o["kind"] == "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    secrets = {o["metadata"]["name"] for o in rendered if o["kind"] == "Secret"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    containers = spec.get("initContainers", []) + spec["containers"]
    assert {c["name"] for c in containers} >= {"topics-init", "worker"}
    config_toml = tmp_path / "config.toml"
    cm = next(o for o in rendered if o["kind"] == "ConfigMap")
    config_toml.write_text(next(iter(v for k, v in cm["data"].items() if k.endswith(".toml"))))
    for c in containers:
        env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
        from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]
                       if "valueFrom" in e}
        assert "DISTILLWATCH_CONFIG" in env, "the patch must merge into, not replace, the env"
        env.pop("DISTILLWATCH_CONFIG")
        for m in c["volumeMounts"]:
            assert m["name"] in volumes or m["name"] in claims, m
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        ca = env["DISTILLWATCH_BROKER__SSL_CAFILE"]
        vol = volumes[mounts[str(Path(ca).parent)]]
        assert vol["secret"]["secretName"] in secrets
        assert [i["path"] for i in vol["secret"]["items"]] == [Path(ca).name]
        # The password comes from a Secret, as every credential does, never from a value.
        ref = from_secret["DISTILLWATCH_BROKER__SASL_PASSWORD"]
        assert ref["name"] in secrets and ref["key"] == "DISTILLWATCH_BROKER__SASL_PASSWORD"
        env["DISTILLWATCH_BROKER__SASL_PASSWORD"] = "from-the-secret"
        cfg = config_for(_with_files({**image_env(), **env}, tmp_path), config_toml)
        _assert_sasl(cfg, "SASL_SSL")


def test_strimzi_users_least_privilege():
    users = {u["metadata"]["name"]: u["spec"]["authorization"]["acls"]
             for u in load_yaml_all(OVERLAY / "strimzi-kafkausers.yaml")}
    assert set(users) == {"distillwatch-worker", "gateway", "alert-reader"}

    def grants(user: str) -> dict[tuple[str, str], set[str]]:
        return {(a["resource"]["type"], a["resource"]["name"]): set(a["operations"])
                for a in users[user]}

    assert grants("gateway") == {("topic", TOPICS.requests): {"Write", "Describe"}}
    w = grants("distillwatch-worker")
    assert "Write" not in w[("topic", TOPICS.requests)]
    for t in INTERNAL:
        assert {"Read", "Write"} <= w[("topic", t)], t
    assert {"Read", "Write", "Create"} <= w[("topic", f"{APP_ID}-")]
    assert ("group", APP_ID) in w
    r = grants("alert-reader")
    assert r[("topic", TOPICS.alerts)] == {"Read", "Describe"}
    assert all(not (k == "topic" and n != TOPICS.alerts) for k, n in r)

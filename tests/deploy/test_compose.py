"""deploy/docker-compose.yml: Docker cannot run here, so check what `docker compose up` would
trip over — files that do not exist, and ports, topics and variables the worker would read
differently from what the other services expect."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from streams.config import Config
from tests.deploy.manifests import (
    COMPOSE,
    DEPLOY,
    Mount,
    compose_env,
    config_for,
    image_env,
    interpolate,
    load_yaml,
    parse_port,
    parse_volume,
    unknown_env,
)

SCRAPE_JOB = "distillwatch"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _workers(services: dict[str, Any]) -> dict[str, Any]:
    return {
        name: s
        for name, s in services.items()
        if isinstance(s.get("command"), list) and s["command"][:1] == ["worker"]
    }


def _mounts(service: dict[str, Any]) -> list[Mount]:
    return [parse_volume(v) for v in service.get("volumes", [])]


def _host_path(source: str) -> Path:
    return (DEPLOY / source).resolve()


def _service_config(service: dict[str, Any]) -> Config:
    """The config a distillwatch container of ``service`` loads: the file bind-mounted at
    DISTILLWATCH_CONFIG (read from the host) plus the service's environment."""
    env = {**image_env(), **compose_env(service)}
    path = env.get("DISTILLWATCH_CONFIG")
    assert path, "no DISTILLWATCH_CONFIG: the container would run on built-in defaults"
    mount = next((m for m in _mounts(service) if m.target == path), None)
    assert mount is not None and mount.bind, f"nothing mounted at {path}"
    return config_for(env, _host_path(mount.source))


def _kafka_env(services: dict[str, Any]) -> dict[str, str]:
    return compose_env(services["kafka"])


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        name, _, addr = item.partition("://")
        host, _, port = addr.rpartition(":")
        out[name] = (host, int(port))
    return out


def test_services_present(services: dict[str, Any]) -> None:
    for name in ("kafka", "topics-init", "prometheus", "alertmanager", "grafana"):
        assert name in services, f"compose has no {name!r} service"
    assert len(_workers(services)) >= 2, "scale-out needs at least two worker services"


def test_kafka_is_official_image_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _kafka_env(services)
    assert not any("ZOOKEEPER" in k for k in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = str(env["KAFKA_NODE_ID"])
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert any(v.startswith(f"{node_id}@") for v in voters)
    # kafka-storage.sh format rejects anything but a base64url UUID (16 bytes).
    raw = base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")
    assert len(raw) == 16
    listeners = _listeners(env["KAFKA_LISTENERS"])
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners
    voter_port = int(voters[0].rsplit(":", 1)[1])
    assert listeners[controller][1] == voter_port
    protocol_map = dict(
        p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocol_map)
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    for name, (_, port) in advertised.items():
        assert listeners[name][1] == port, f"advertised listener {name} port differs"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    # Published ports must be listeners advertised as reachable from the host.
    for spec in kafka.get("ports", []):
        _, host_port, target = parse_port(spec)
        match = [a for a in advertised.values() if a[1] == target]
        assert match and match[0][0] in ("localhost", "127.0.0.1") and host_port == target


def test_worker_config_validates_and_reaches_kafka(services: dict[str, Any]) -> None:
    env = _kafka_env(services)
    advertised = set(_listeners(env["KAFKA_ADVERTISED_LISTENERS"]).values())
    for name, svc in _workers(services).items():
        cfg = _service_config(svc)
        host, _, port = cfg.broker.bootstrap.rpartition(":")
        assert (host, int(port)) in advertised, (
            f"{name}: broker.url {cfg.broker.url} is not an advertised Kafka listener"
        )
        assert host in services, f"{name}: broker host {host} is not a compose service"


def test_simulated_traffic_goes_where_the_workers_read(services: dict[str, Any]) -> None:
    traffic = services["traffic"]
    assert traffic.get("profiles"), "traffic must not start with a plain `up`"
    cmd = traffic["command"]
    assert cmd[0] == "simulate"
    worker_cfg = _service_config(next(iter(_workers(services).values())))
    assert cmd[cmd.index("--broker") + 1] == worker_cfg.broker.url
    traffic_cfg = _service_config(traffic)
    # simulate produces to topics.requests of its own config unless --topic says otherwise.
    assert "--topic" not in cmd and traffic_cfg.topics.requests == worker_cfg.topics.requests
    scenario = cmd[1].replace("${SCENARIO:-", "").rstrip("}")
    mount = next(m for m in _mounts(traffic) if scenario.startswith(m.target + "/"))
    assert (_host_path(mount.source) / scenario.removeprefix(mount.target + "/")).is_file()


def test_workers_share_one_consumer_group_with_own_state(services: dict[str, Any]) -> None:
    workers = _workers(services)
    cfgs = {name: _service_config(s) for name, s in workers.items()}
    assert len({c.worker.app_id for c in cfgs.values()}) == 1, "workers must share app_id"
    assert len({c.topics.model_dump_json() for c in cfgs.values()}) == 1
    state_volumes = []
    for name, svc in workers.items():
        data_dir = cfgs[name].worker.data_dir
        mount = next((m for m in _mounts(svc) if m.target == data_dir), None)
        assert mount is not None, f"{name}: worker.data_dir {data_dir} is not on a volume"
        assert not mount.bind and not mount.read_only
        state_volumes.append(mount.source)
    # RocksDB locks its directory: two workers must never share one.
    assert len(set(state_volumes)) == len(state_volumes)


def test_workers_wait_for_topics_init(services: dict[str, Any]) -> None:
    for name, svc in _workers(services).items():
        assert "--no-create-topics" in svc["command"], f"{name} would create topics itself"
        cond = svc["depends_on"]["topics-init"]["condition"]
        assert cond == "service_completed_successfully"
    init = services["topics-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "healthcheck" in services["kafka"]
    assert init.get("restart", "no") == "no"


def test_topics_init_uses_the_workers_image_and_config(services: dict[str, Any]) -> None:
    init = services["topics-init"]
    workers = list(_workers(services).values())
    assert all(w["image"] == init["image"] for w in workers)
    init_cfg = _service_config(init)
    worker_cfg = _service_config(workers[0])
    assert init_cfg.topics == worker_cfg.topics
    assert init_cfg.broker == worker_cfg.broker
    script = init["entrypoint"][-1]
    assert script == "/opt/distillwatch/topics-init/create_topics.py"


def test_replayable_history_is_not_rejected_as_too_old(services: dict[str, Any]) -> None:
    # Re-processing replays `requests` back to its retention; validation must accept events
    # that old, or a replay sends its oldest events to the DLQ.
    retention_ms = int(compose_env(services["topics-init"])["TOPICS_REQUESTS_RETENTION_MS"])
    for svc in _workers(services).values():
        assert _service_config(svc).validation.max_past_s * 1000 > retention_ms


def test_metrics_reachable_and_ports_unique(services: dict[str, Any]) -> None:
    published: list[int] = []
    for svc in services.values():
        for spec in svc.get("ports", []):
            host_ip, host_port, _ = parse_port(spec)
            # Bound to loopback: this stack has no authentication in front of it.
            assert host_ip == "127.0.0.1", f"{spec} is published on every interface"
            assert host_port is not None
            published.append(host_port)
    assert len(published) == len(set(published)), "two services publish the same host port"
    for name, svc in _workers(services).items():
        cfg = _service_config(svc)
        assert cfg.metrics.host == "0.0.0.0", f"{name}: /metrics unreachable from Prometheus"
        targets = [parse_port(p)[2] for p in svc.get("ports", [])]
        assert cfg.metrics.port in targets, f"{name}: metrics port {cfg.metrics.port} not published"


def test_every_distillwatch_variable_is_a_config_field(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert unknown_env(compose_env(svc)) == [], name


def test_referenced_files_exist(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for m in _mounts(svc):
            if m.bind:
                assert _host_path(m.source).exists(), f"{name}: {m.source} does not exist"
            else:
                assert m.source in declared, f"{name}: volume {m.source} not declared"
        build = svc.get("build")
        if build:
            ctx = _host_path(build["context"])
            assert (ctx / build.get("dockerfile", "Dockerfile")).is_file()
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"


def _prometheus_config(services: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    mounts = {m.target: m for m in _mounts(services["prometheus"])}
    cmd = services["prometheus"]["command"]
    cfg_path = next(c.split("=", 1)[1] for c in cmd if c.startswith("--config.file="))
    assert cfg_path in mounts, f"prometheus --config.file {cfg_path} is not mounted"
    return load_yaml(_host_path(mounts[cfg_path].source)), {
        t: m.source for t, m in mounts.items()
    }


def test_prometheus_scrapes_every_worker(services: dict[str, Any]) -> None:
    prom, _ = _prometheus_config(services)
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert SCRAPE_JOB in jobs, f"no scrape job {SCRAPE_JOB!r} (the alert rules select on it)"
    targets = {t for sc in jobs[SCRAPE_JOB].get("static_configs", []) for t in sc["targets"]}
    expected = {
        f"{name}:{_service_config(svc).metrics.port}"
        for name, svc in _workers(services).items()
    }
    assert targets == expected


def test_prometheus_loads_the_rules_and_finds_alertmanager(services: dict[str, Any]) -> None:
    prom, mounts = _prometheus_config(services)
    rule_globs = prom.get("rule_files") or []
    assert rule_globs, "prometheus.yml loads no rule files"
    rules_dir_target = next(t for t in mounts if t.rstrip("/").endswith("rules"))
    host_rules = sorted(_host_path(mounts[rules_dir_target]).glob("*.yml"))
    assert host_rules, "deploy/prometheus/rules has no rule file"
    for rule in host_rules:
        container_path = f"{rules_dir_target.rstrip('/')}/{rule.name}"
        assert any(fnmatch.fnmatch(container_path, g) for g in rule_globs), (
            f"{rule.name} is mounted at {container_path} but no rule_files glob loads it"
        )
    am_port = parse_port(services["alertmanager"]["ports"][0])[2]
    am_targets = {
        t
        for am in prom["alerting"]["alertmanagers"]
        for sc in am.get("static_configs", [])
        for t in sc["targets"]
    }
    assert f"alertmanager:{am_port}" in am_targets


def test_alertmanager_config_mounted(services: dict[str, Any]) -> None:
    am = services["alertmanager"]
    mounts = {m.target: m for m in _mounts(am)}
    path = next(c.split("=", 1)[1] for c in am["command"] if c.startswith("--config.file="))
    cfg = load_yaml(_host_path(mounts[path].source))
    assert "route" in cfg and "receivers" in cfg
    # Secrets it reads from files (slack_api_url_file, ...) must be mounted where it looks.
    files = list(_file_settings(cfg))
    for setting, file_path in files:
        assert file_path in mounts, f"alertmanager {setting}: {file_path} is not mounted"
        assert _host_path(mounts[file_path].source).is_file()


def _file_settings(node: Any, key: str = "") -> Any:
    """(key, path) of every ``*_file`` setting anywhere in a parsed YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _file_settings(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _file_settings(v, key)
    elif key.endswith("_file") and isinstance(node, str):
        yield key, node


def test_grafana_provisioning_matches_the_mounts(services: dict[str, Any]) -> None:
    graf = services["grafana"]
    mounts = {m.target: m for m in _mounts(graf)}
    prov = _host_path(mounts["/etc/grafana/provisioning"].source)
    datasources = [
        ds
        for f in sorted((prov / "datasources").glob("*.y*ml"))
        for ds in (load_yaml(f) or {}).get("datasources", [])
    ]
    prom_port = parse_port(services["prometheus"]["ports"][0])[2]
    prom_ds = [d for d in datasources if d.get("type") == "prometheus"]
    assert prom_ds, "no Prometheus datasource provisioned"
    assert any(d.get("url", "").rstrip("/") == f"http://prometheus:{prom_port}" for d in prom_ds)
    providers = [
        p
        for f in sorted((prov / "dashboards").glob("*.y*ml"))
        for p in (load_yaml(f) or {}).get("providers", [])
    ]
    assert providers, "no dashboard provider provisioned"
    for p in providers:
        path = p["options"]["path"].rstrip("/")
        mount = next((m for t, m in mounts.items() if path == t or path.startswith(t + "/")), None)
        assert mount is not None, f"dashboard provider path {path} is not mounted"
        host = _host_path(mount.source) / path.removeprefix(mount.target).lstrip("/")
        assert list(host.rglob("*.json")), f"no dashboard JSON under {host}"


def test_alert_links_open_the_provisioned_dashboard(services: dict[str, Any]) -> None:
    """Every alert links to sinks.grafana_url: in compose it must be the published Grafana
    and a dashboard uid that provisioning loads."""
    cfg = _service_config(next(iter(_workers(services).values())))
    url = urlsplit(cfg.sinks.grafana_url)
    grafana_ports = {parse_port(p)[1] for p in services["grafana"]["ports"]}
    assert url.hostname == "localhost" and url.port in grafana_ports
    mounts = {m.target: m for m in _mounts(services["grafana"])}
    dash_dir = next(m for t, m in mounts.items() if t.endswith("/dashboards"))
    uids = {
        json.loads(p.read_text()).get("uid") for p in _host_path(dash_dir.source).glob("*.json")
    }
    parts = url.path.split("/")
    assert parts[1] == "d" and parts[2] in uids, f"no dashboard with uid {parts[2]!r}"


def test_files_named_by_the_config_are_mounted(services: dict[str, Any]) -> None:
    """A `*_file` setting (policy, secrets) names a path inside the container: it must be a
    bind mount of a file that exists, and the policy must load."""
    from streams.sinks.policy import load_policy

    checked = 0
    for name, svc in services.items():
        env = compose_env(svc)
        mounts = {m.target: m for m in _mounts(svc)}
        for key, path in env.items():
            if not (key.startswith("DISTILLWATCH_") and key.lower().endswith("_file")):
                continue
            assert path in mounts and mounts[path].bind, f"{name}: {key}={path} is not mounted"
            host = _host_path(mounts[path].source)
            assert host.is_file(), f"{name}: {host} does not exist"
            if key == "DISTILLWATCH_SINKS__POLICY_FILE":
                # Shipped dry-run: the stack must never act on accounts out of the box.
                assert load_policy(host).dry_run is True
            checked += 1
    assert checked, "no service sets a *_file (the workers use the example policy)"


# ------------------------------------------------------------------ store and console


def _interpolated_config(service: dict[str, Any], **set_vars: str) -> Config:
    """Like _service_config, with compose's ``${VAR:-default}`` resolved as compose would
    (``set_vars`` exported, everything else at its default)."""
    env = {}
    for k, v in compose_env(service).items():
        for var, value in set_vars.items():
            v = re.sub(r"\$\{" + var + r":?-[^}]*\}", lambda _m, value=value: value, v)
        env[k] = interpolate(v)
    svc = {**service, "environment": env}
    return _service_config(svc)


USERS = '[{"name": "alice", "role": "approver", "password_hash": "scrypt$16384$8$1$c2FsdA$aA"}]'


def test_store_and_console_services_use_postgresql(services: dict[str, Any]) -> None:
    for name in ("postgres", "store", "console"):
        assert name in services, f"compose has no {name!r} service"
    store, console = services["store"], services["console"]
    assert store["command"] == ["store"]
    assert console["command"] == ["console", "--no-store"]  # one consumer: the store
    pg_env = compose_env(services["postgres"])
    for name in ("store", "console"):
        cfg = _interpolated_config(services[name], DISTILLWATCH_CONSOLE_USERS=USERS)
        url = urlsplit(cfg.store.url or "")
        assert url.scheme == "postgresql" and url.hostname == "postgres", name
        assert url.username == pg_env["POSTGRES_USER"] and url.path == "/" + pg_env["POSTGRES_DB"]
        # The password the store uses is the one PostgreSQL was given, whatever is exported.
        assert url.password == interpolate(pg_env["POSTGRES_PASSWORD"]), name
        again = _interpolated_config(services[name], POSTGRES_PASSWORD="exported-pw",
                                     DISTILLWATCH_CONSOLE_USERS=USERS)
        assert urlsplit(again.store.url or "").password == "exported-pw", name
        assert "exported-pw" not in str(again.masked()), name
        # Same broker and record key as the workers, or every alert would be rejected.
        worker = _interpolated_config(next(iter(_workers(services).values())))
        assert cfg.broker.url == worker.broker.url
        assert cfg.worker.record_secret and worker.worker.record_secret
        assert (cfg.worker.record_secret.get_secret_value()
                == worker.worker.record_secret.get_secret_value())
        assert not any(p for p in services["postgres"].get("ports", [])), "db published"
        deps = services[name]["depends_on"]
        assert name != "store" or deps["postgres"]["condition"] == "service_healthy"
    # The image's HEALTHCHECK probes a worker's /metrics: neither process serves it, so each
    # replaces it (the console with its own /healthz) or turns it off.
    assert store["healthcheck"] == {"disable": True}
    assert "/healthz" in str(console["healthcheck"]["test"])


def test_console_is_published_on_loopback_only_and_linked_from_slack(
    services: dict[str, Any],
) -> None:
    console = services["console"]
    cfg = _interpolated_config(console, DISTILLWATCH_CONSOLE_USERS=USERS)
    (spec,) = console["ports"]
    host_ip, host_port, target = parse_port(spec)
    # Inside the container it must listen on all interfaces for the port mapping to reach
    # it; the host side is loopback, the compose form of "bound to 127.0.0.1".
    assert host_ip == "127.0.0.1" and target == cfg.console.port
    assert cfg.console.host == "0.0.0.0"
    assert [u.name for u in cfg.console.users] == ["alice"]
    assert cfg.console.session_secret is not None
    # The workers link Slack messages to this published console.
    for name, svc in _workers(services).items():
        public = urlsplit(_service_config(svc).console.public_url or "")
        assert (public.hostname, public.port) == ("localhost", host_port), name
    # Without exported users the config still loads (the console then says what to do).
    assert _interpolated_config(console).console.users == ()
    # Approvals are in Kafka: the console shares no worker's volume, and signs decisions
    # with the workers' record secret.
    worker_volumes = {m.source for s in _workers(services).values() for m in _mounts(s)
                      if not m.bind}
    assert not {m.source for m in _mounts(console)} & worker_volumes
    assert cfg.sinks.approvals_store == "kafka"
    assert cfg.worker.record_secret is not None
    for name, svc in _workers(services).items():
        assert _interpolated_config(svc).worker.record_secret == cfg.worker.record_secret, name

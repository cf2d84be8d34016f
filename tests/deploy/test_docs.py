"""docs/deployment.md stays true to the tree: the files it names exist, and the ports and
commands it gives are the compose file's."""

from __future__ import annotations

import re

from tests.deploy.manifests import COMPOSE, REPO, load_yaml, parse_port

DOC = REPO / "docs" / "deployment.md"


def test_named_files_exist() -> None:
    text = DOC.read_text()
    paths = set(re.findall(r"`((?:deploy|grafana|scenarios|tests)/[^`\s]*)`", text))
    assert paths, "the page names no file"
    for p in sorted(paths):
        # Globs and placeholders (worker-N) name families of files.
        if any(ch in p for ch in "*<>") or "-N" in p:
            continue
        assert (REPO / p.rstrip("/")).exists(), f"docs/deployment.md names missing {p}"


def test_published_ports_are_documented() -> None:
    text = DOC.read_text()
    services = load_yaml(COMPOSE)["services"]
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            _, host_port, _ = parse_port(spec)
            assert f"localhost:{host_port}" in text, f"{name}'s port {host_port} not documented"


def test_compose_commands_use_the_compose_file() -> None:
    text = DOC.read_text()
    assert "docker compose -f deploy/docker-compose.yml up --build" in text
    for line in text.splitlines():
        if line.lstrip().startswith("docker compose "):
            assert "-f deploy/docker-compose.yml" in line, line

"""Readers shared by the deploy tests: the compose file, the k8s manifests, the Dockerfile,
and the check that a set of DISTILLWATCH_* variables means something to streams/config.py."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streams.config import ENV_PREFIX, Config, load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
EXAMPLE_CONFIG = DEPLOY / "config.example.toml"

# Variables the CLI reads itself rather than through Config's SECTION__FIELD mapping.
CLI_ENV = {"DISTILLWATCH_CONFIG"}


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list[Any]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def unknown_env(env: Mapping[str, str]) -> list[str]:
    """DISTILLWATCH_* names in ``env`` that map to no Config field (empty when all do).

    load_config silently skips a variable without ``__`` and rejects an unknown field only
    when the section exists, so a typo such as DISTILLWATCH_METRIC__HOST would otherwise
    surface as "unknown section" at start-up, or never."""
    bad = []
    for key in env:
        if not key.startswith(ENV_PREFIX) or key in CLI_ENV:
            continue
        section, sep, name = key.removeprefix(ENV_PREFIX).lower().partition("__")
        sec_field = Config.model_fields.get(section)
        if not sep or sec_field is None:
            bad.append(key)
            continue
        section_model = sec_field.annotation
        assert section_model is not None
        if name not in section_model.model_fields:
            bad.append(key)
    return bad


def config_for(env: Mapping[str, str], toml: Path | None) -> Config:
    """The Config a process would load from ``toml`` with ``env``; every DISTILLWATCH_*
    variable must name a real field and the result must validate."""
    assert not unknown_env(env), f"variables naming no config field: {unknown_env(env)}"
    return load_config(toml, {k: str(v) for k, v in env.items()})


def image_env() -> dict[str, str]:
    """DISTILLWATCH_* variables the worker image sets (deploy/Dockerfile ENV): every container
    of the image starts with them, under whatever compose or Kubernetes adds."""
    env = Dockerfile.read(DOCKERFILE).env()
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment as a dict (both the map and the list forms)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def parse_port(spec: str | int | Mapping[str, Any]) -> tuple[str | None, int | None, int]:
    """(host_ip, host_port, container_port) of a compose port entry."""
    if isinstance(spec, Mapping):
        return spec.get("host_ip"), spec.get("published"), int(spec["target"])
    parts = str(spec).split("/")[0].split(":")
    if len(parts) == 1:
        return None, None, int(parts[0])
    if len(parts) == 2:
        return None, int(parts[0]), int(parts[1])
    return parts[0], int(parts[1]), int(parts[2])


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool
    bind: bool  # a host path (else a named volume)


def interpolate(text: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR-default}`` with VAR unset: the default."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)


def parse_volume(spec: str | Mapping[str, Any]) -> Mount:
    if isinstance(spec, str):
        spec = interpolate(spec)
    if isinstance(spec, Mapping):
        return Mount(
            spec["source"], spec["target"], bool(spec.get("read_only")), spec["type"] == "bind"
        )
    parts = spec.split(":")
    source, target = parts[0], parts[1]
    ro = len(parts) > 2 and "ro" in parts[2].split(",")
    return Mount(source, target, ro, source.startswith((".", "/", "~")))


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""

    instructions: list[tuple[str, str]] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        df = cls()
        logical = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                logical += line[:-1] + " "
                continue
            logical += line
            op, _, rest = logical.partition(" ")
            df.instructions.append((op.upper(), rest.strip()))
            if op.upper() == "ARG" and "=" in rest:
                k, v = rest.strip().split("=", 1)
                df.args.setdefault(k, v)
            logical = ""
        return df

    def expand(self, text: str) -> str:
        return re.sub(
            r"\$\{(\w+)\}|\$(\w+)",
            lambda m: self.args.get(m.group(1) or m.group(2), m.group(0)),
            text,
        )

    def all(self, op: str) -> list[str]:
        return [rest for o, rest in self.instructions if o == op]

    def stages(self) -> list[list[tuple[str, str]]]:
        out: list[list[tuple[str, str]]] = []
        for op, rest in self.instructions:
            if op == "FROM":
                out.append([])
            if out:
                out[-1].append((op, rest))
        return out

    def final_stage(self, op: str) -> list[str]:
        return [rest for o, rest in self.stages()[-1] if o == op]

    def env(self) -> dict[str, str]:
        """ENV of the final stage (KEY=VALUE form)."""
        out: dict[str, str] = {}
        for rest in self.final_stage("ENV"):
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                out[k] = v
        return out

    def copies(self) -> list[tuple[list[str], str, str | None]]:
        """(sources, destination, --from stage or None) of every COPY."""
        out = []
        for rest in self.all("COPY"):
            toks = shlex.split(rest)
            opts = [t for t in toks if t.startswith("--")]
            paths = [t for t in toks if not t.startswith("--")]
            src_stage = next((o.split("=", 1)[1] for o in opts if o.startswith("--from=")), None)
            out.append((paths[:-1], paths[-1], src_stage))
        return out

"""deploy/Dockerfile without Docker: what it copies exists and is not excluded from the build
context, the runtime stage is slim and non-root, and its health check and environment agree
with the worker's configuration."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
import sys
import tomllib

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from streams.broker import free_port
from tests.deploy.manifests import DEPLOY, DOCKERFILE, REPO, Dockerfile, config_for, unknown_env


@pytest.fixture(scope="module")
def df() -> Dockerfile:
    return Dockerfile.read(DOCKERFILE)


def _dockerignore_excludes(path: str) -> bool:
    """Whether deploy/Dockerfile.dockerignore keeps ``path`` out of the build context (last
    matching pattern wins, ``!`` re-includes; parents count, as in Docker)."""
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = False
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.removeprefix("!").rstrip("/")
        bare = pat.removeprefix("**/")
        if any(fnmatch.fnmatch(c, pat) or fnmatch.fnmatch(c, bare) for c in candidates):
            excluded = not negate
    return excluded


def test_runtime_stage_is_slim_python(df: Dockerfile) -> None:
    stages = df.stages()
    assert len(stages) >= 2, "build and runtime stages keep compilers out of the image"
    base = df.expand(stages[-1][0][1])
    assert base.startswith("python:3.11") and "slim" in base
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_runs_as_a_numeric_non_root_user(df: Dockerfile) -> None:
    user = df.expand(df.final_stage("USER")[-1])
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "runAsNonRoot needs a numeric non-root uid"


def test_copied_sources_exist_and_reach_the_context(df: Dockerfile) -> None:
    copied = []
    for sources, _dest, stage in df.copies():
        if stage is not None:
            continue
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: no such file in the repository"
            assert not _dockerignore_excludes(src), f"COPY {src}: excluded by the .dockerignore"
            copied.append(src.rstrip("/"))
    # Every package pyproject installs must be in the image, or `pip install .` drops it.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    assert _dockerignore_excludes(".venv") and _dockerignore_excludes("tests/conftest.py")


def test_healthcheck_calls_the_metrics_endpoint(df: Dockerfile) -> None:
    (check,) = df.final_stage("HEALTHCHECK")
    cfg = config_for(df.env(), DEPLOY / "config.example.toml")
    # The port comes from the effective config, not a second copy of the default.
    assert "/metrics" in check and "load_config" in check
    assert str(cfg.metrics.port) in df.final_stage("EXPOSE")[0].split()
    assert cfg.metrics.host == "0.0.0.0"


def test_image_sets_only_layout_variables(df: Dockerfile) -> None:
    # Variables beat the config file: a port or topic fixed in the image could not be
    # changed in the TOML any more.
    env = {k for k in df.env() if k.startswith("DISTILLWATCH_")}
    assert env == {
        "DISTILLWATCH_CONFIG",
        "DISTILLWATCH_METRICS__HOST",
        "DISTILLWATCH_WORKER__DATA_DIR",
    }


def test_environment_names_real_config_fields(df: Dockerfile) -> None:
    env = df.env()
    assert unknown_env(env) == []
    cfg = config_for(env, DEPLOY / "config.example.toml")
    volumes = " ".join(df.final_stage("VOLUME"))
    assert cfg.worker.data_dir in volumes
    # The baked-in config is the example file, at the path DISTILLWATCH_CONFIG names.
    dests = {dest: srcs for srcs, dest, _ in df.copies()}
    assert dests[env["DISTILLWATCH_CONFIG"]] == ["deploy/config.example.toml"]


def test_entrypoint_is_the_cli(df: Dockerfile) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (entry,) = df.final_stage("ENTRYPOINT")
    assert entry.strip('[]"') in scripts
    assert '"worker"' in df.final_stage("CMD")[0]


def _healthcheck_argv(df: Dockerfile) -> list[str]:
    (check,) = df.final_stage("HEALTHCHECK")
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_healthcheck_command_passes_on_a_live_endpoint_only(df: Dockerfile) -> None:
    """Run the image's health-check command here, against a real /metrics server."""
    argv = _healthcheck_argv(df)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=CollectorRegistry())
    try:
        port = server.server_port
        env = {**os.environ, "DISTILLWATCH_METRICS__PORT": str(port)}
        assert subprocess.run(argv, env=env, capture_output=True, timeout=20).returncode == 0
    finally:
        server.shutdown()
        thread.join(5)
    env = {**os.environ, "DISTILLWATCH_METRICS__PORT": str(free_port())}
    assert subprocess.run(argv, env=env, capture_output=True, timeout=20).returncode != 0


def test_build_stage_installs_the_pinned_dependencies(df: Dockerfile) -> None:
    """The build stage turns pyproject's dependency list into a requirements file with an
    inline Python program; run that program on the real pyproject.toml."""
    (run,) = [r for r in df.all("RUN") if "tomllib" in r]
    toks = shlex.split(run)
    program = toks[toks.index("-c") + 1]
    out = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=20
    )
    assert out.returncode == 0, out.stderr
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.stdout.split() == deps
    assert all("==" in d for d in deps), "the image should install pinned versions"

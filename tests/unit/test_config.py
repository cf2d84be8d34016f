from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.config import Config, ConfigError, load_config


def test_defaults_and_env_overrides():
    cfg = load_config(environ={"DISTILLWATCH_WINDOWS__SIZE_S": "30", "OTHER": "x"})
    assert cfg.windows.size_s == 30.0
    assert cfg.broker.bootstrap == "127.0.0.1:9092"


def test_file_then_environment(tmp_path: Path):
    p = tmp_path / "c.toml"
    p.write_text('[windows]\nsize_s = 20\nlateness_s = 2\n[broker]\nurl = "kafka://k:1"\n')
    cfg = load_config(p, environ={"DISTILLWATCH_WINDOWS__SIZE_S": "15"})
    assert (cfg.windows.size_s, cfg.windows.lateness_s) == (15.0, 2.0)
    assert cfg.broker.url == "kafka://k:1"


@pytest.mark.parametrize(
    ("toml", "field", "hint"),
    [
        ("[windows]\nsize_s = -5\n", "windows.size_s", "greater than 0"),
        ('[broker]\nurl = "localhost:9092"\n', "broker.url", "kafka://HOST:PORT"),
        ("[windows]\nsize = 5\n", "windows.size", "unknown field"),
        ('[metrics]\nport = "http"\n', "metrics.port", "integer"),
    ],
)
def test_errors_name_the_field_and_the_fix(tmp_path: Path, toml, field, hint):
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    assert field in str(exc.value) and hint in str(exc.value)
    assert exc.value.errors[0][0] == field


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", environ={})
    p = tmp_path / "x.toml"
    p.write_text("[windows\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p, environ={})


def test_secrets_are_masked():
    env = {}
    for section, model in Config.model_fields.items():
        for name, field in model.annotation.model_fields.items():  # type: ignore[union-attr]
            if "SecretStr" in str(field.annotation):
                env[f"DISTILLWATCH_{section.upper()}__{name.upper()}"] = "https://hooks/s3cr3t"
    assert env, "expected at least one secret field"
    cfg = load_config(environ=env)
    assert "s3cr3t" not in str(cfg.masked())


def test_readme_documents_every_field():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_]+\.[a-z_*]+)`", readme))
    for section, model in Config.model_fields.items():
        if section in ("sinks", "topics"):
            continue  # documented by wildcard rows
        for name in model.annotation.model_fields:  # type: ignore[union-attr]
            assert f"{section}.{name}" in documented, f"README lacks {section}.{name}"

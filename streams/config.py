"""The one typed configuration of distillwatch: a TOML file plus ``DISTILLWATCH_*``
environment overrides, validated at start-up.

Environment variables name a section and a field joined by a double underscore, e.g.
``DISTILLWATCH_WINDOWS__SIZE_S=30`` or ``DISTILLWATCH_BROKER__URL=kafka://kafka:9092``.
Every error names the field, the value received and the expected form.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "DISTILLWATCH_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL, kafka://HOST:PORT")
    tansu_bin: str | None = Field(
        None, description="Path to the Tansu binary for the embedded broker (default: search)"
    )

    @field_validator("url")
    @classmethod
    def _kafka_url(cls, v: str) -> str:
        if not v.startswith("kafka://") or ":" not in v.removeprefix("kafka://"):
            raise ValueError("expected kafka://HOST:PORT, e.g. kafka://127.0.0.1:9092")
        return v

    @property
    def bootstrap(self) -> str:
        """HOST:PORT[,HOST:PORT] for clients that want no scheme."""
        return self.url.removeprefix("kafka://")


class TopicsConfig(_Section):
    requests: str = "requests"
    requests_dlq: str = "requests-dlq"
    findings: str = "findings"
    alerts: str = "alerts"
    alerts_dlq: str = "alerts-dlq"
    actions: str = "actions"
    partitions: int = Field(4, ge=1, description="Partitions created for new topics")

    def all(self) -> list[str]:
        return [
            self.requests,
            self.requests_dlq,
            self.findings,
            self.alerts,
            self.alerts_dlq,
            self.actions,
        ]


class ValidationConfig(_Section):
    max_future_s: float = Field(300.0, ge=0, description="How far in the future ts may be")
    max_past_s: float = Field(7 * 86400.0, ge=0, description="How far in the past ts may be")
    max_payload_bytes: int = Field(64 * 1024, ge=256)
    dlq_payload_bytes: int = Field(
        4096, ge=64, description="Original bytes kept in a DLQ record (the rest is truncated)"
    )


class WindowsConfig(_Section):
    size_s: float = Field(60.0, gt=0, description="Event-time window length in seconds")
    lateness_s: float = Field(10.0, ge=0, description="Allowed lateness after a window ends")
    timer_s: float = Field(
        1.0, gt=0, description="Wall-clock tick that closes windows when traffic goes quiet"
    )
    idle_partition_s: float = Field(
        10.0,
        gt=0,
        description="A partition silent this long (wall clock) stops holding the watermark back",
    )


class DetectionConfig(_Section):
    account_grace: int = Field(5, ge=1, description="Active windows before an account is scored")
    account_threshold: float = Field(6.0, gt=0, description="Account baseline score that fires")
    quiet_windows: int = Field(3, ge=1, description="Quiet windows before an alert resolves")
    max_members: int = Field(10_000, ge=1, description="Cap on members listed in cluster alerts")


class MetricsConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9109, ge=0, le=65535, description="Port of /metrics (0 = any free port)")


class WorkerConfig(_Section):
    app_id: str = Field("distillwatch", min_length=1, description="Faust app id / consumer group")
    data_dir: str = Field("./.distillwatch-data", description="Faust table and state directory")


class SinksConfig(_Section):
    slack_webhook_url: SecretStr | None = None
    webhook_secret: SecretStr | None = None


class Config(_Section):
    broker: BrokerConfig = BrokerConfig()
    topics: TopicsConfig = TopicsConfig()
    validation: ValidationConfig = ValidationConfig()
    windows: WindowsConfig = WindowsConfig()
    detection: DetectionConfig = DetectionConfig()
    metrics: MetricsConfig = MetricsConfig()
    worker: WorkerConfig = WorkerConfig()
    sinks: SinksConfig = SinksConfig()

    def masked(self) -> dict[str, Any]:
        """The effective configuration as a dict, with secrets shown as ``**********``."""
        return self.model_dump(mode="json")

    def detection_kwargs(self) -> dict[str, Any]:
        """Plain keyword arguments for :class:`detectors.pipeline.Detection`."""
        return {
            "window_s": self.windows.size_s,
            "lateness_s": self.windows.lateness_s,
            "account_grace": self.detection.account_grace,
            "account_threshold": self.detection.account_threshold,
        }


class ConfigError(ValueError):
    """A configuration file or environment variable is invalid. ``errors`` lists
    ``(field, message)`` pairs; the text names each field and the expected form."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {field}: {msg}" for field, msg in errors)
        super().__init__(f"invalid configuration ({source}):\n{lines}")


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        section, sep, name = key.removeprefix(ENV_PREFIX).lower().partition("__")
        if not sep or not name:
            # Not of the SECTION__FIELD form: DISTILLWATCH_CONFIG and friends are CLI-level.
            continue
        out.setdefault(section, {})[name] = value
    return out


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read ``path`` (TOML; optional), overlay ``DISTILLWATCH_SECTION__FIELD`` variables and
    validate. Raises :class:`ConfigError` naming every bad field."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(source, [("<file>", "file not found")]) from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(source, [("<file>", f"not valid TOML: {err}")]) from None
    env = _env_overrides(environ)
    if env:
        source += " + environment"
    for section, fields in env.items():
        current = data.get(section)
        data[section] = {**(current if isinstance(current, dict) else {}), **fields}
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        errors = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"])
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown field; see `distillwatch config --show` for the valid ones"
            errors.append((field, f"{msg} (got {e.get('input')!r})"))
        raise ConfigError(source, errors) from None

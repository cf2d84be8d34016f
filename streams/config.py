"""The one typed configuration of distillwatch: a TOML file plus ``DISTILLWATCH_*``
environment overrides, validated at start-up.

Environment variables name a section and a field joined by a double underscore, e.g.
``DISTILLWATCH_WINDOWS__SIZE_S=30`` or ``DISTILLWATCH_BROKER__URL=kafka://kafka:9092``.
Every error names the field, the value received and the expected form.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from detectors.params import DetectionParams
from streams.urlmask import mask_urls

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "DISTILLWATCH_"

# The detection defaults, read from the detectors' own parameter dataclasses.
_D = DetectionParams()
_BASE, _EXT, _SHIFT, _RAMP = _D.baseline, _D.extraction, _D.shift, _D.ramp


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL, kafka://HOST:PORT")
    tansu_bin: str | None = Field(
        None, description="Path to the Tansu binary for the embedded broker (default: search)"
    )
    # Client security, applied to every Kafka client by streams/kafka_security.py.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="PLAINTEXT (embedded broker, tests), SSL, SASL_PLAINTEXT or SASL_SSL "
        "(production: SCRAM over TLS, see docs/deployment.md SECURITY)",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when security_protocol is SASL_*"
    )
    sasl_username: str | None = Field(None, description="SASL user (the worker's principal)")
    sasl_password: SecretStr | None = Field(None, description="SASL password")
    sasl_password_file: str | None = Field(None, description="File holding sasl_password")
    ssl_cafile: str | None = Field(
        None, description="CA bundle that signed the brokers' certificates (default: system CAs)"
    )

    @field_validator("url")
    @classmethod
    def _kafka_url(cls, v: str) -> str:
        if not v.startswith("kafka://") or ":" not in v.removeprefix("kafka://"):
            raise ValueError("expected kafka://HOST:PORT, e.g. kafka://127.0.0.1:9092")
        return v

    @model_validator(mode="after")
    def _security(self) -> BrokerConfig:
        if self.sasl_password and self.sasl_password_file:
            raise ValueError("set sasl_password or sasl_password_file, not both")
        for name in ("sasl_password_file", "ssl_cafile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {path!r}")
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and (self.sasl_password or self.sasl_password_file)
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and "
                "sasl_password (or sasl_password_file)"
            )
        return self

    def sasl_secret(self) -> str | None:
        """The SASL password from the field or its file; only Kafka clients should hold it."""
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is None:
            return None
        return Path(self.sasl_password_file).read_text().strip() or None

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
    # Console verdicts (false positive) that `evaluate` can read as labels (docs/oncall.md).
    labels: str = "labels"
    partitions: int = Field(4, ge=1, description="Partitions created for new topics")

    def layout(self) -> dict[str, int]:
        """Topic name -> partitions. ``findings`` has one partition: the alert agent needs
        findings and watermarks in one order, and its state table is co-partitioned with it."""
        out = dict.fromkeys(self.all(), self.partitions)
        out[self.findings] = 1
        # One worker at a time runs the suspension hook, so its action budget is global.
        out[self.alerts] = 1
        return out

    def retention(self) -> dict[str, dict[str, str]]:
        """Topic configs the worker and topics-init create topics with: every topic's
        retention is explicit (docs/deployment.md, "Topics")."""
        day = 24 * 3600 * 1000
        return {
            # What re-processing after a detector change can replay; raw traffic is the
            # largest topic, so it is the shortest-lived one that matters.
            self.requests: {"cleanup.policy": "delete", "retention.ms": str(7 * day)},
            self.requests_dlq: {"cleanup.policy": "delete", "retention.ms": str(14 * day)},
            self.findings: {"cleanup.policy": "delete", "retention.ms": str(7 * day)},
            # Alert history and the audit trail: long-lived, never compacted (every state
            # change of an alert, every decision, is a record someone may need to read).
            self.alerts: {"cleanup.policy": "delete", "retention.ms": str(365 * day)},
            self.alerts_dlq: {"cleanup.policy": "delete", "retention.ms": str(30 * day)},
            self.actions: {"cleanup.policy": "delete", "retention.ms": "-1"},
            # One verdict per alert id: the newest is the verdict.
            self.labels: {"cleanup.policy": "compact"},
        }

    def all(self) -> list[str]:
        return [
            self.requests,
            self.requests_dlq,
            self.findings,
            self.alerts,
            self.alerts_dlq,
            self.actions,
            self.labels,
        ]


class ValidationConfig(_Section):
    max_future_s: float = Field(300.0, ge=0, description="How far in the future ts may be")
    max_past_s: float = Field(7 * 86400.0, ge=0, description="How far in the past ts may be")
    max_payload_bytes: int = Field(64 * 1024, ge=256)
    dlq_payload_bytes: int = Field(
        4096, ge=64, description="Original bytes kept in a DLQ record (the rest is truncated)"
    )
    max_tokens: int = Field(
        10_000_000,
        ge=1,
        le=10**12,
        description="Largest input_tokens/output_tokens of one request (above: out_of_range)",
    )


class WindowsConfig(_Section):
    size_s: float = Field(60.0, gt=0, description="Event-time window length in seconds")
    lateness_s: float = Field(10.0, ge=0, description="Allowed lateness after a window ends")


class DetectionConfig(_Section):
    """Detector thresholds: ONE configuration for every scenario (docs/detectors.md explains
    each knob and the runbook of each detector). The defaults are
    :class:`detectors.params.DetectionParams`'s (the one place they are written); the bounds
    are validated here, and :meth:`Config.detection_params` hands the detectors the frozen
    dataclasses."""

    coordination: bool = Field(
        _D.coordination,
        description="Run the swarm (cohort_swarm) and lockstep (coactivity_lockstep) detectors",
    )

    account_grace: int = Field(
        _D.account_grace, ge=1, le=1000,
        description="Active windows before an account is scored on its own"
    )
    account_threshold: float = Field(
        _BASE.threshold, gt=0, le=100,
        description="Robust z of an account window over its baseline that fires"
    )
    account_critical_z: float = Field(
        _BASE.critical_z, gt=0, le=1000,
        description="Robust z from which a young, extraction-like account's finding is critical",
    )
    account_persist: int = Field(
        _BASE.persist, ge=1, le=60,
        description="Consecutive anomalous windows before an account finding"
    )
    extraction_min_hourly: float = Field(
        _EXT.min_hourly, ge=1, le=1_000_000,
        description="Requests in the last hour account_extraction needs"
    )
    extraction_population_z: float = Field(
        _EXT.population_z, gt=0, le=100,
        description="Robust z of an account's hourly rate over its tier for account_extraction",
    )
    shift_min_hourly: float = Field(
        _SHIFT.min_hourly, ge=1, le=1_000_000,
        description="Harvest-like answers in an hour for account_profile_shift",
    )
    shift_z: float = Field(
        _SHIFT.z, gt=0, le=1000,
        description="Poisson z over the usual hour for account_profile_shift"
    )
    shift_min_windows: int = Field(
        _SHIFT.min_windows, ge=1, le=1_000_000,
        description="Active windows of history before account_profile_shift can fire",
    )
    ramp_min_hours: int = Field(
        _RAMP.min_hours, ge=2, le=24 * 30,
        description="Clock hours of sustained harvest before account_ramp can fire",
    )
    ramp_min_coverage: float = Field(
        _RAMP.min_coverage, gt=0, le=1,
        description="Share of the run's hours with a harvest-like answer for account_ramp",
    )
    ramp_max_gap_h: int = Field(
        _RAMP.max_gap_h, ge=1, le=24 * 7,
        description="Hours without a harvest-like answer that end an account_ramp run",
    )
    ramp_trend_z: float = Field(
        _RAMP.trend_z, ge=-100, le=100,
        description="Lowest Poisson trend z of the run's hourly harvest for account_ramp",
    )
    ramp_alert_z: float = Field(
        _RAMP.alert_z, gt=0, le=100,
        description="Trend z from which a sustained harvest run alerts as account_ramp",
    )
    account_hold_s: float = Field(
        _D.account_hold_s, ge=0, le=7 * 86400,
        description="An account finding is re-emitted this long (event time) after it fired",
    )
    young_days: float = Field(
        _D.young_days, gt=0, le=3650, description="Accounts younger than this (days) count as young"
    )
    suspicious: float = Field(
        _D.suspicious, gt=0, le=1,
        description="Extraction-likeness (0..1) from which an account is a suspicious member",
    )
    cluster_windows: int = Field(
        _D.cluster_windows, ge=1, le=1440,
        description="Account windows per cluster window (key aggregates)"
    )
    cluster_min_members: int = Field(
        _D.cluster_min_members, ge=2, le=100_000,
        description="Distinct suspicious members a key needs in a cluster window to be flagged",
    )
    cluster_min_share: float = Field(
        _D.cluster_min_share, gt=0, le=1,
        description="Share of a key's account-windows that must be suspicious to flag it",
    )
    cluster_min_z: float = Field(
        _D.cluster_min_z, ge=0, le=1000,
        description="Poisson z of a key's suspicious members over its own baseline that flags it",
    )
    cluster_critical_members: int = Field(
        _D.cluster_critical_members, ge=1, le=1_000_000,
        description="Campaign members from which a campaign can be critical"
    )
    cluster_critical_young_share: float = Field(
        _D.cluster_critical_young_share, ge=0, le=1,
        description="Share of young members a critical campaign needs"
    )
    cluster_hold_windows: int = Field(
        _D.cluster_hold_windows, ge=1, le=1000,
        description="Cluster windows a campaign stays open after its members were last seen",
    )
    cluster_critical_harvest_tokens: float = Field(
        _D.cluster_critical_harvest_tokens, gt=0, le=1e15,
        description="Output tokens a campaign has harvested from which it is critical",
    )
    cluster_fold_share: float = Field(
        _D.cluster_fold_share, gt=0, le=1,
        description="Share of a swarm's members in one campaign that folds the swarm into it",
    )
    template_min_accounts: int = Field(
        _D.template_min_accounts, ge=2, le=10_000,
        description="Distinct accounts with near-duplicate prompts that found a template group",
    )
    template_max_bits: int = Field(
        _D.template_max_bits, ge=0, le=32,
        description="Hamming distance within which prompts share a template"
    )
    population_min_accounts: int = Field(
        _D.population_min_accounts, ge=1, le=1_000_000,
        description="Active accounts of a tier needed to measure its lift (e.g. launch day)",
    )
    quiet_windows: int = Field(
        _D.quiet_windows, ge=1,
        description="Quiet windows before an alert resolves",
    )
    max_members: int = Field(
        _D.max_members, ge=1,
        description="Cap on members listed in cluster alerts",
    )
    account_ttl_s: float = Field(
        _D.account_ttl_s, ge=3600, le=365 * 86400,
        description="An account inactive this long (event time) loses its state (evicted)",
    )


class MetricsConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9109, ge=0, le=65535, description="Port of /metrics (0 = any free port)")


class WorkerConfig(_Section):
    app_id: str = Field("distillwatch", min_length=1, description="Faust app id / consumer group")
    data_dir: str = Field("./.distillwatch-data", description="Faust table and state directory")
    slow_batch_s: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="for tests only: block this long after each fetched batch, to show that "
        "a slow worker raises the same alerts as a fast one; 0 in production",
    )
    record_secret: SecretStr | None = Field(
        None,
        description="HMAC key that signs findings/alerts/actions records (streams/integrity.py); "
        "every worker must share it. Unset: a random key kept in data_dir (one worker only)",
    )
    record_secret_file: str | None = Field(
        None, description="File holding record_secret (e.g. a mounted secret)"
    )

    @model_validator(mode="after")
    def _one_secret(self) -> WorkerConfig:
        if self.record_secret and self.record_secret_file:
            raise ValueError("set record_secret or record_secret_file, not both")
        if self.record_secret_file is not None and not Path(self.record_secret_file).is_file():
            raise ValueError(f"record_secret_file: no such file {self.record_secret_file!r}")
        return self


_SECRET_FIELDS = (
    "slack_webhook_url",
    "slack_bot_token",
    "webhook_urls",
    "webhook_secret",
    "account_api_auth",
)


class SinksConfig(_Section):
    """Alert delivery: Slack, signed webhooks and the suspension hook (docs/delivery.md).

    Every credential is a ``SecretStr`` (masked in ``config --show``, never logged) and can
    come from the environment (``DISTILLWATCH_SINKS__<FIELD>``) or from a file named by
    ``<field>_file`` (a mounted secret); setting both is an error.
    """

    slack_webhook_url: SecretStr | None = Field(
        None,
        description="Slack incoming-webhook URL. It is a credential: anyone holding it can "
        "post to the channel, so it comes from the environment or slack_webhook_url_file",
    )
    slack_webhook_url_file: str | None = Field(
        None, description="File holding the Slack webhook URL (e.g. a mounted secret)"
    )
    slack_bot_token: SecretStr | None = Field(
        None,
        description="Slack bot token (xoxb-...). With it and slack_channel, the sink uses "
        "chat.postMessage + chat.update and edits one message per campaign in place; an "
        "incoming webhook cannot edit, so it posts on open and on escalation only",
    )
    slack_bot_token_file: str | None = Field(None, description="File holding the bot token")
    slack_channel: str | None = Field(
        None, description="Channel id for the bot-token mode (the worker refuses to start "
        "with a bot token and no channel)"
    )
    slack_api_url: str = Field(
        "https://slack.com/api", description="Slack Web API base URL (tests point it elsewhere)"
    )
    slack_min_interval_s: float = Field(
        1.0,
        ge=0,
        description="Minimum gap between two Slack requests: Slack allows about one message "
        "per second per webhook and answers 429 beyond it",
    )
    slack_new_messages_per_minute: int = Field(
        10,
        ge=1,
        description="New Slack messages allowed per minute; past it, new entities are counted "
        "in one digest message instead of each getting its own (edits are not limited)",
    )
    webhook_urls: tuple[SecretStr, ...] = Field(
        (),
        description="Generic webhook URLs, comma separated in the environment; each gets the "
        "alert JSON signed with webhook_secret",
    )
    webhook_urls_file: str | None = Field(
        None, description="File with one webhook URL per line"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key signing webhook bodies; required with webhook_urls"
    )
    webhook_secret_file: str | None = Field(None, description="File holding webhook_secret")
    account_api_url: str | None = Field(
        None,
        description="Platform account API the suspension hook POSTs actions to; unset = the "
        "hook only records decisions (as in dry-run)",
    )
    account_api_auth: SecretStr | None = Field(
        None, description="Authorization header value for the account API, e.g. 'Bearer ...'"
    )
    account_api_auth_file: str | None = Field(None, description="File holding account_api_auth")
    policy_file: str | None = Field(
        None,
        description="TOML suspension policy (deploy/policy.example.toml); unset = the built-in "
        "default, which is dry-run",
    )
    grafana_url: str = Field(
        "http://localhost:3000/d/distillwatch-overview/distillwatch",
        description="Dashboard linked from every alert; the alert's time range is appended",
    )
    runbook_url: str | None = Field(
        None,
        description="Absolute http(s) URL of the runbook page (docs/detectors.md as published); "
        "alerts link to <runbook_url>#<detector>; unset = no runbook link",
    )
    queue_size: int = Field(
        1000,
        ge=1,
        description="Bounded queue per sink. Delivery never waits on a full queue: an alert "
        "that does not fit goes to alerts-dlq (reason queue_full)",
    )
    max_attempts: int = Field(
        6, ge=1, description="Attempts per delivery before it goes to alerts-dlq"
    )
    backoff_initial_s: float = Field(
        0.5, gt=0, description="First retry delay; doubles per attempt, with jitter"
    )
    backoff_max_s: float = Field(30.0, gt=0, description="Cap on one retry delay")
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of one HTTP request")
    approvals_poll_s: float = Field(
        2.0, gt=0, description="How often the worker picks up approvals made with the CLI"
    )
    approvals_store: Literal["kafka", "file"] = Field(
        "kafka",
        description="Where pending approvals live: kafka (the compacted topic "
        "<worker.app_id>-approvals, seen from any host) or file (<worker.data_dir>/"
        "approvals.json, one host only; for a worker without a broker)",
    )
    drain_timeout_s: float = Field(
        5.0, ge=0, description="At shutdown, time given to queued deliveries to finish"
    )

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split_urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(u.strip() for u in v.split(",") if u.strip())
        return v

    @field_validator("slack_api_url", "account_api_url", "grafana_url", "runbook_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SinksConfig:
        for name in _SECRET_FIELDS:
            value = getattr(self, name)
            if value and getattr(self, f"{name}_file", None):
                raise ValueError(f"set {name} or {name}_file, not both")
            path = getattr(self, f"{name}_file", None)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}_file: no such file {path!r}")
        for url in self.webhook_urls:
            if not url.get_secret_value().startswith(("http://", "https://")):
                raise ValueError("webhook_urls: expected http:// or https:// URLs")
        if (self.webhook_urls or self.webhook_urls_file) and not (
            self.webhook_secret or self.webhook_secret_file
        ):
            raise ValueError("webhook_urls needs webhook_secret (bodies are always signed)")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s must be >= backoff_initial_s, got {self.backoff_max_s} < "
                f"{self.backoff_initial_s}"
            )
        return self

    def secret(self, name: str) -> str | None:
        """The plain value of secret ``name`` from the field or its ``_file``; None if unset.

        Read at start-up by the sinks only; nothing else should hold the plain value."""
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        path = getattr(self, f"{name}_file", None)
        if path is None:
            return None
        text = Path(path).read_text().strip()
        return text or None

    def webhook_url_list(self) -> list[str]:
        """Plain webhook URLs from ``webhook_urls`` or ``webhook_urls_file``."""
        if self.webhook_urls:
            return [u.get_secret_value() for u in self.webhook_urls]
        if self.webhook_urls_file is None:
            return []
        lines = Path(self.webhook_urls_file).read_text().splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


class StoreConfig(_Section):
    """The alert store (streams/store): alerts and the audit trail kept in a database."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL: sqlite:///PATH or postgresql://USER@HOST/DB (psycopg 3); "
        "unset = sqlite under worker.data_dir (alerts.db). A password belongs in the "
        "environment (DISTILLWATCH_STORE__URL), not in the file",
    )
    group_id: str | None = Field(
        None, description="Consumer group of the store (default <worker.app_id>-store)"
    )

    @field_validator("url")
    @classmethod
    def _db_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite:///", "postgresql", "postgres://")):
            raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST/DB")
        return v


class ConsoleUser(_Section):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["viewer", "approver"] = "viewer"
    password_hash: str = Field(
        description="scrypt$N$r$p$salt$hash from `distillwatch console --hash-password`"
    )

    @field_validator("password_hash")
    @classmethod
    def _scrypt(cls, v: str) -> str:
        if not v.startswith("scrypt$") or v.count("$") != 5:
            raise ValueError("expected scrypt$N$r$p$salt$hash (distillwatch console "
                             "--hash-password)")
        return v


class ConsoleConfig(_Section):
    """The web console (streams/console): the alert queue, alert pages, approvals."""

    host: str = Field("127.0.0.1", description="Address to bind (keep 127.0.0.1 behind a proxy)")
    port: int = Field(8088, ge=0, le=65535, description="Port (0 = any free port)")
    auth: Literal["password", "header"] = Field(
        "password",
        description="password: the users below log in; header: an OIDC proxy in front sets "
        "user_header (only safe when nothing else can reach the console)",
    )
    users: tuple[ConsoleUser, ...] = Field(
        (), description="[[console.users]] name, role (viewer|approver), password_hash"
    )
    user_header: str = Field(
        "X-Forwarded-User", description="Header naming the user in header mode"
    )
    approvers: tuple[str, ...] = Field(
        (), description="Header mode: user names with the approver role (others: viewer)"
    )
    session_secret: SecretStr | None = Field(
        None, description="Key signing session cookies; unset = random per start (logs out)"
    )
    session_ttl_s: float = Field(12 * 3600.0, ge=60, le=30 * 86400)
    public_url: str | None = Field(
        None, description="Base URL people open the console at (links in Slack, the demo)"
    )

    @field_validator("approvers", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return tuple(x.strip() for x in v.split(",") if x.strip()) if isinstance(v, str) else v

    @field_validator("users", mode="before")
    @classmethod
    def _users_json(cls, v: Any) -> Any:
        # From the environment (a Kubernetes Secret key): a JSON array of user tables.
        if isinstance(v, str):
            try:
                return json.loads(v)
            except ValueError:
                raise ValueError("expected a JSON array of {name, role, password_hash}") from None
        return v


class Config(_Section):
    broker: BrokerConfig = BrokerConfig()
    topics: TopicsConfig = TopicsConfig()
    validation: ValidationConfig = ValidationConfig()
    windows: WindowsConfig = WindowsConfig()
    detection: DetectionConfig = DetectionConfig()
    metrics: MetricsConfig = MetricsConfig()
    worker: WorkerConfig = WorkerConfig()
    sinks: SinksConfig = SinksConfig()
    store: StoreConfig = StoreConfig()
    console: ConsoleConfig = ConsoleConfig()

    def masked(self) -> dict[str, Any]:
        """The effective configuration as a dict, with secrets shown as ``**********`` and
        credentials inside plain URL fields (userinfo, query values) as ``***``."""
        return mask_urls(self.model_dump(mode="json"))  # type: ignore[no-any-return]

    def detection_kwargs(self) -> dict[str, Any]:
        """Plain keyword arguments for :class:`detectors.pipeline.Detection` (every
        ``[detection]`` field except the alert-book ones, plus the window settings)."""
        d = self.detection.model_dump()
        d.pop("quiet_windows")
        return {"window_s": self.windows.size_s, "lateness_s": self.windows.lateness_s, **d}

    def detection_params(self) -> DetectionParams:
        """The validated ``[detection]`` and ``[windows]`` sections as the detectors' frozen
        parameters (the account rules' dataclasses included)."""
        return DetectionParams.from_flat(
            window_s=self.windows.size_s,
            lateness_s=self.windows.lateness_s,
            **self.detection.model_dump(),
        )


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
            got = e.get("input")
            if isinstance(got, dict):
                # A whole-section error would echo every value, secrets included.
                got = f"section with fields {sorted(got)}"
            errors.append((field, f"{msg} (got {got!r})"))
        raise ConfigError(source, errors) from None

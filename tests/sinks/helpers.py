"""Alert changes and dispatcher set-up shared by the sink tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streams.config import Config, SinksConfig, WorkerConfig
from streams.delivery import build_dispatcher
from streams.sinks.dispatch import Dispatcher

# Small backoff and spacing so retries take milliseconds.
FAST = {
    "slack_min_interval_s": 0.05,
    "backoff_initial_s": 0.02,
    "backoff_max_s": 0.2,
    "max_attempts": 8,
    "request_timeout_s": 2.0,
    "approvals_poll_s": 0.1,
    "drain_timeout_s": 1.0,
}

# A dry-run policy that would suspend any account alert: one agreeing detector and any
# severity suffice, so what the audit (or an empty `actions` topic) shows does not depend on
# detector tuning; the gates themselves have unit tests.
SUSPEND_ANY_ACCOUNT_POLICY = """
dry_run = true
min_agreeing_detectors = 1
auto_suspend_min_severity = "info"
[[rules]]
entity_type = "account"
action = "suspend_account"
"""


def wait_until(cond: Callable[[], object], timeout: float, every: float = 0.2) -> bool:
    """Poll ``cond()`` until it is truthy or ``timeout`` seconds passed; its last answer.

    For end-to-end tests that watch a worker process from outside (its metrics, a receiver)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())


def change(
    entity_id: str,
    *,
    state: str = "opened",
    entity_type: str = "account",
    detector: str = "account_baseline",
    severity: str = "warning",
    score: float = 9.0,
    ts: float = 1_000_000.0,
    members: list[str] | None = None,
    alert_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An alert change dict as the worker writes it to the alerts topic."""
    out: dict[str, Any] = {
        "alert_id": alert_id or f"{entity_type}-{entity_id}-{detector}",
        "state": state,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "detector": detector,
        "severity": severity,
        "ts": ts,
        "opened_ts": ts,
        "window_start": ts - 60,
        "window_end": ts,
        "score": score,
        "threshold": 6.0,
        "evidence": {
            "features": {"requests": 160.0, "output_tokens": 64000.0},
            "baseline": {"requests": 8.0, "output_tokens": 3000.0},
            "score": score,
            "threshold": 6.0,
            "signals": [{"signal": "requests", "score": score},
                        {"signal": "output_tokens", "score": score / 2}],
        },
    }
    if entity_type == "cluster":
        out["members"] = members or []
        out["member_count"] = len(out["members"])
    out.update(extra)
    return out


class Harness:
    """A dispatcher built from config, with audit and DLQ records kept in lists."""

    def __init__(self, tmp: Path, policy: str | None = None, **sinks: Any) -> None:
        policy_file = None
        if policy is not None:
            policy_file = tmp / "policy.toml"
            policy_file.write_text(policy)
        self.cfg = Config(
            sinks=SinksConfig(**{**FAST, "policy_file": policy_file and str(policy_file),
                                 **sinks}),
            worker=WorkerConfig(data_dir=str(tmp / "data")),
        )
        self.registry = CollectorRegistry()
        self.audit: list[dict[str, Any]] = []
        self.dlq: list[dict[str, Any]] = []
        self.dispatcher: Dispatcher = build_dispatcher(
            self.cfg, self.registry, audit=self._audit, dlq=self._dlq
        )

    async def _audit(self, rec: dict[str, Any]) -> None:
        self.audit.append(rec)

    async def _dlq(self, rec: dict[str, Any]) -> None:
        self.dlq.append(rec)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    async def run(self, changes: list[dict[str, Any]], *, settle: float = 0.0) -> None:
        """Start, submit every change, wait for the queues to empty, stop."""
        await self.dispatcher.start()
        for c in changes:
            await self.dispatcher.submit(c)
        if settle:
            await asyncio.sleep(settle)
        await asyncio.wait_for(self.dispatcher.join(), 30)
        await self.dispatcher.stop(1.0)

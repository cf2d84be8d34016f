"""Reading the alert store: the queue, one alert, its timeline and its decisions.

Plain dicts out, so the CLI, the console and tests share them without SQLAlchemy rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from streams.store.schema import actions, alert_changes, alerts

__all__ = ["alert_actions", "find_alert", "list_alerts", "timeline"]

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def list_alerts(
    engine: Engine,
    *,
    open_only: bool = False,
    severity: str | None = None,
    detector: str | None = None,
    since: float | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Alerts, most severe then newest first; ``since`` keeps those updated since then.

    The member lists stay in the database (a campaign can list 10,000): ``members`` is
    left out here, :func:`find_alert` has it."""
    cols = [c for c in alerts.c if c.name != "members"]
    q = select(*cols)
    if open_only:
        q = q.where(alerts.c.state == "open")
    if severity:
        q = q.where(alerts.c.severity == severity)
    if detector:
        q = q.where(alerts.c.detector == detector)
    if since is not None:
        q = q.where(alerts.c.updated_ts >= since)
    q = q.order_by(alerts.c.updated_ts.desc()).limit(limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    rows.sort(key=lambda r: (-SEVERITY_RANK.get(r["severity"], 0), -r["updated_ts"]))
    return rows


def find_alert(engine: Engine, alert_id: str) -> dict[str, Any] | None:
    """One alert by id, or by a prefix that names exactly one (like git)."""
    with engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
        if row is None and 6 <= len(alert_id) < 64:
            esc = alert_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = conn.execute(
                select(alerts).where(alerts.c.alert_id.like(esc + "%", escape="\\")).limit(2)
            ).all()
            row = rows[0] if len(rows) == 1 else None
    return dict(row._mapping) if row is not None else None


def timeline(engine: Engine, alert_id: str) -> list[dict[str, Any]]:
    """Every stored change of the alert, oldest first."""
    q = (select(alert_changes).where(alert_changes.c.alert_id == alert_id)
         .order_by(alert_changes.c.ts, alert_changes.c.id))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def alert_actions(engine: Engine, alert_id: str) -> list[dict[str, Any]]:
    """Audit records about the alert (suspension decisions, approvals, console actions),
    oldest first."""
    q = (select(actions).where(actions.c.alert_id == alert_id)
         .order_by(actions.c.ts, actions.c.id))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]

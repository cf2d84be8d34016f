"""Tables of the alert store (SQLAlchemy Core; migrations in ``streams/store/migrations``).

- ``alert_changes``: every signed alert change as it came off ``alerts``; unique on
  (alert_id, state, ts), so a redelivered or re-produced change is stored once.
- ``alerts``: one row per alert id, the latest change folded in (the queue reads this) plus
  what humans did in the console (acknowledged, assignee, false positive).
- ``actions``: every signed audit record from ``actions`` (suspension decisions, approvals,
  console actions); unique on the SHA-256 of the record's bytes, so redelivery is a no-op
  and the console can insert its own records before the consumer sees them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["actions", "alert_changes", "alerts", "metadata"]

metadata = MetaData()

ID = 64  # alert ids are 20 hex digits; entity ids are bounded at 256 by validation

alert_changes = Table(
    "alert_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(ID), nullable=False),
    Column("state", String(16), nullable=False),
    Column("ts", Float, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("score", Float),
    Column("threshold", Float),
    Column("member_count", Integer),
    Column("harvest_tokens", Float),
    Column("harvest_requests", Float),
    Column("evidence", JSON),
    UniqueConstraint("alert_id", "state", "ts", name="uq_alert_changes_change"),
)
Index("ix_alert_changes_alert", alert_changes.c.alert_id, alert_changes.c.ts)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(ID), primary_key=True),
    Column("entity_type", String(16), nullable=False),
    Column("entity_id", String(256), nullable=False),
    Column("detector", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # open | resolved
    Column("opened_ts", Float, nullable=False),
    Column("updated_ts", Float, nullable=False),
    Column("resolved_ts", Float),
    Column("score", Float),
    Column("threshold", Float),
    Column("member_count", Integer),
    Column("harvest_tokens", Float),
    Column("harvest_requests", Float),
    Column("org_id", String(256)),
    Column("evidence", JSON),
    Column("members", JSON),
    Column("acked_by", String(256)),
    Column("acked_ts", Float),
    Column("assignee", String(256)),
    Column("false_positive", Boolean, nullable=False, default=False),
    Column("fp_by", String(256)),
    Column("fp_note", Text),
)
Index("ix_alerts_state", alerts.c.state, alerts.c.severity)

actions = Table(
    "actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("ts", Float, nullable=False),
    Column("alert_id", String(ID)),
    Column("decision", String(32), nullable=False),
    Column("action", String(32)),
    Column("account_id", String(256)),
    Column("count", Integer),
    Column("by", String(256)),
    Column("note", Text),
    Column("reason", Text),
    Column("record", JSON, nullable=False),
)
Index("ix_actions_alert", actions.c.alert_id, actions.c.ts)

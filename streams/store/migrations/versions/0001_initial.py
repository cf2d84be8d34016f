"""The first schema: alert_changes, alerts, actions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("member_count", sa.Integer),
        sa.Column("harvest_tokens", sa.Float),
        sa.Column("harvest_requests", sa.Float),
        sa.Column("evidence", sa.JSON),
        sa.UniqueConstraint("alert_id", "state", "ts", name="uq_alert_changes_change"),
    )
    op.create_index("ix_alert_changes_alert", "alert_changes", ["alert_id", "ts"])
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("entity_type", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_ts", sa.Float, nullable=False),
        sa.Column("updated_ts", sa.Float, nullable=False),
        sa.Column("resolved_ts", sa.Float),
        sa.Column("score", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("member_count", sa.Integer),
        sa.Column("harvest_tokens", sa.Float),
        sa.Column("harvest_requests", sa.Float),
        sa.Column("org_id", sa.String(256)),
        sa.Column("evidence", sa.JSON),
        sa.Column("members", sa.JSON),
        sa.Column("acked_by", sa.String(256)),
        sa.Column("acked_ts", sa.Float),
        sa.Column("assignee", sa.String(256)),
        sa.Column("false_positive", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fp_by", sa.String(256)),
        sa.Column("fp_note", sa.Text),
    )
    op.create_index("ix_alerts_state", "alerts", ["state", "severity"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("alert_id", sa.String(64)),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32)),
        sa.Column("account_id", sa.String(256)),
        sa.Column("count", sa.Integer),
        sa.Column("by", sa.String(256)),
        sa.Column("note", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_index("ix_actions_alert", "actions", ["alert_id", "ts"])


def downgrade() -> None:
    op.drop_table("actions")
    op.drop_table("alerts")
    op.drop_table("alert_changes")

"""The store on SQLite and on a real PostgreSQL server: alert changes fold into one row per
alert, and redelivery, reordering or re-production of a record never changes the result."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from streams.store.db import migrate, open_store
from streams.store.schema import actions, alert_changes, alerts
from streams.store.writer import StoreWriter, encode
from tests.store.data import campaign


def _count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _row(engine: Engine, aid: str):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.alert_id == aid)).one()


def test_changes_fold_into_one_alert_and_redelivery_is_a_no_op(store_engine: Engine) -> None:
    w = StoreWriter(store_engine)
    changes = campaign(n=3)
    resolved = {**changes[-1], "state": "resolved", "ts": changes[-1]["ts"] + 1800}
    assert [w.add_alert(c) for c in [*changes, resolved]] == [True] * 4
    # Everything again, newest first (a consumer restarted from an old offset, a producer
    # retry): nothing new, and the alert is not re-opened by an old "updated".
    assert [w.add_alert(c) for c in reversed([*changes, resolved])] == [False] * 4
    assert _count(store_engine, alert_changes) == 4
    row = _row(store_engine, changes[0]["alert_id"])
    assert (row.state, row.severity, row.member_count) == ("resolved", "critical", 30)
    assert row.opened_ts == changes[0]["ts"] and row.resolved_ts == resolved["ts"]
    assert row.harvest_tokens == 1_200_000 and len(row.members) == 30
    assert row.evidence["shared_attributes"][0]["kind"] == "payment fingerprint"


def test_an_old_change_arriving_late_does_not_overwrite_a_newer_one(store_engine) -> None:
    w = StoreWriter(store_engine)
    first, second = campaign(n=2)
    assert w.add_alert(second) and w.add_alert(first)
    row = _row(store_engine, first["alert_id"])
    assert (row.score, row.member_count, row.state) == (second["score"], 20, "open")


def test_audit_records_are_stored_once_and_console_records_update_the_alert(
    store_engine: Engine,
) -> None:
    w = StoreWriter(store_engine)
    [opened] = campaign(n=1)
    w.add_alert(opened)
    aid = opened["alert_id"]
    pending = encode({"ts": 1.0, "decision": "pending_approval", "action": "suspend",
                      "alert_id": aid, "count": 10})
    ack = encode({"ts": 2.0, "decision": "console", "action": "acknowledge", "alert_id": aid,
                  "by": "alice"})
    fp = encode({"ts": 3.0, "decision": "console", "action": "false_positive",
                 "alert_id": aid, "by": "bob", "note": "load test"})
    assert [w.add_action(v) for v in (pending, ack, fp, pending, ack, fp)] == [True] * 3 + [
        False] * 3
    assert _count(store_engine, actions) == 3
    row = _row(store_engine, aid)
    assert (row.acked_by, row.false_positive, row.fp_by, row.fp_note) == (
        "alice", True, "bob", "load test")


def test_garbage_is_skipped_not_stored(store_engine: Engine) -> None:
    w = StoreWriter(store_engine)
    assert not w.add_alert({"alert_id": "x", "state": "exploded", "ts": 1})
    assert not w.add_alert({"alert_id": ["x"], "state": "opened", "ts": 1})
    assert not w.add_action(b"not json")
    assert not w.add_action(encode({"no": "decision"}))
    assert _count(store_engine, alerts) == 0 and _count(store_engine, actions) == 0


def test_migrations_are_idempotent_and_recorded(store_url: str) -> None:
    engine = open_store(store_url)
    migrate(engine)  # again: nothing to do
    open_store(store_url).dispose()
    with engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == (
            "0001")
    engine.dispose()


def test_hostile_values_are_stored_not_fatal(store_engine: Engine) -> None:
    """Ids come from traffic: a NUL byte (PostgreSQL text refuses it), evidence saturated to
    infinity (JSON has none), a member count beyond INTEGER. None may stop the store."""
    w = StoreWriter(store_engine)
    [c] = campaign(n=1)
    c.update(entity_id="evil\x00id", member_count=2**40, members=["a\x00b", "ok"])
    c["evidence"]["features"]["x"] = float("inf")
    c["evidence"]["n\x00"] = float("nan")
    assert w.add_alert(c)
    row = _row(store_engine, c["alert_id"])
    assert row.entity_id == "evil\ufffdid" and row.members == ["a\ufffdb", "ok"]
    assert row.member_count is None and row.evidence["features"]["x"] is None
    assert w.add_action(encode({"ts": 1.0, "decision": "console\x00", "alert_id": "a\x00",
                                "count": 2**40, "note": "\x00"}))
    assert w.unstorable == 0

"""``StoreIngest`` on the real broker into a real PostgreSQL database: only signed records
are stored, each once, even when the whole topic is read again by another consumer."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaProducer
from sqlalchemy import func, select

from streams.config import load_config
from streams.integrity import RecordSigner
from streams.store.db import open_store
from streams.store.ingest import StoreIngest
from streams.store.schema import actions, alert_changes, alerts
from streams.store.writer import StoreWriter, encode
from tests.conftest import FAST_WORKER_ENV, isolated_topics
from tests.store.data import account, campaign

pytestmark = pytest.mark.integration

SECRET = FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"].encode()


def _send(broker, records: list[tuple[str, bytes, bytes, list]]) -> None:  # type: ignore[no-untyped-def]
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        for topic, key, value, headers in records:
            p.send(topic, key=key, value=value, headers=headers)
        p.flush()
    finally:
        p.close()


def test_signed_records_stored_once_forged_ones_skipped(broker, pg_url) -> None:
    topics, env = isolated_topics()
    signer, forger = RecordSigner(SECRET), RecordSigner(b"not-the-worker-key-0123456789")
    recs = []
    for c in [*campaign(n=3), account()]:
        key, value = c["alert_id"].encode(), encode(c)
        recs.append((topics.alerts, key, value, signer.headers(topics.alerts, key, value)))
    audit = encode({"ts": 5.0, "decision": "pending_approval", "action": "suspend",
                    "alert_id": campaign()[0]["alert_id"], "count": 30})
    recs.append((topics.actions, b"k", audit, signer.headers(topics.actions, b"k", audit)))
    # An attacker who can produce to the topics: an unsigned alert, one signed with another
    # key, a real signature moved onto another alert, and an alert signed for `findings`.
    fake = encode({**account("f0rged"), "entity_id": "victim"})
    real = recs[0]
    recs += [
        (topics.alerts, b"f0rged", fake, []),
        (topics.alerts, b"f0rged", fake, forger.headers(topics.alerts, b"f0rged", fake)),
        (topics.alerts, b"f0rged", fake, real[3]),
        (topics.alerts, b"f0rged", fake, signer.headers(topics.findings, b"f0rged", fake)),
        (topics.actions, b"k2", encode({"decision": "console", "action": "false_positive",
                                        "alert_id": real[1].decode(), "by": "mallory"}), []),
    ]
    _send(broker, recs)

    env = {**env, "DISTILLWATCH_BROKER__URL": broker.url,
           "DISTILLWATCH_WORKER__RECORD_SECRET": SECRET.decode()}
    cfg = load_config(environ={**env, "DISTILLWATCH_STORE__GROUP_ID": uuid.uuid4().hex})
    engine = open_store(pg_url)
    first = StoreIngest(cfg, StoreWriter(engine), signer)
    first.run(idle_exit_s=1.5)
    assert dict(first.stored) == {topics.alerts: 4, topics.actions: 1}
    assert dict(first.rejected) == {topics.alerts: 4, topics.actions: 1}

    # A second consumer group reads everything again: all duplicates, nothing new.
    cfg2 = load_config(environ={**env, "DISTILLWATCH_STORE__GROUP_ID": uuid.uuid4().hex})
    again = StoreIngest(cfg2, StoreWriter(engine), signer)
    again.run(idle_exit_s=1.5)
    assert dict(again.duplicates) == {topics.alerts: 4, topics.actions: 1}
    assert not again.stored
    with engine.connect() as conn:
        n = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
             for t in (alerts, alert_changes, actions)}
        assert n == {"alerts": 2, "alert_changes": 4, "actions": 1}
        ids = set(conn.execute(select(alerts.c.entity_id)).scalars())
        assert ids == {"camp-1", "ramp-1"}  # no "victim"
        assert not conn.execute(select(alerts.c.false_positive)).scalars().first()
    engine.dispose()


def test_a_database_outage_loses_nothing(broker) -> None:  # type: ignore[no-untyped-def]
    """The database goes down while the store runs: it retries, resumes from the committed
    offsets when the database is back, and stores every record exactly once."""
    import threading
    import time

    from tests.store.pg import PostgresServer

    topics, env = isolated_topics()
    env = {**env, "DISTILLWATCH_BROKER__URL": broker.url,
           "DISTILLWATCH_WORKER__RECORD_SECRET": SECRET.decode(),
           "DISTILLWATCH_STORE__GROUP_ID": uuid.uuid4().hex}
    signer = RecordSigner(SECRET)
    first, later = campaign(n=2), [account()]

    def send(changes) -> None:  # type: ignore[no-untyped-def]
        _send(broker, [(topics.alerts, c["alert_id"].encode(), encode(c),
                        signer.headers(topics.alerts, c["alert_id"].encode(), encode(c)))
                       for c in changes])

    with PostgresServer() as pg:
        engine = open_store(pg.url)
        ingest = StoreIngest(load_config(environ=env), StoreWriter(engine), signer)
        send(first)
        thread = threading.Thread(target=ingest.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while ingest.stored[topics.alerts] < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ingest.stored[topics.alerts] == 2
        pg.stop()
        send(later)
        time.sleep(1.5)  # the store meets the outage and backs off
        pg.start()
        deadline = time.monotonic() + 40
        while ingest.stored[topics.alerts] < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        ingest.stop()
        thread.join(10)
        assert dict(ingest.stored) == {topics.alerts: 3}
        with engine.connect() as conn:
            rows = conn.execute(select(alert_changes.c.alert_id, alert_changes.c.state)).all()
            assert len(rows) == 3, (rows, ingest.writer.unstorable)
        engine.dispose()


def test_store_command_catches_up_into_the_default_sqlite(broker, tmp_path, monkeypatch,
                                                          capsys) -> None:  # type: ignore[no-untyped-def]
    """``distillwatch store --catch-up`` with no store.url: SQLite under worker.data_dir,
    then ``alerts list`` reads the same file."""
    from streams.cli import main

    topics, env = isolated_topics()
    signer = RecordSigner(SECRET)
    _send(broker, [(topics.alerts, c["alert_id"].encode(), encode(c),
                    signer.headers(topics.alerts, c["alert_id"].encode(), encode(c)))
                   for c in campaign(n=2)])
    for k, v in {**env, "DISTILLWATCH_WORKER__DATA_DIR": str(tmp_path / "data"),
                 "DISTILLWATCH_WORKER__RECORD_SECRET": SECRET.decode(),
                 "DISTILLWATCH_STORE__GROUP_ID": uuid.uuid4().hex}.items():
        monkeypatch.setenv(k, v)
    assert main(["store", "--broker", broker.url, "--catch-up"]) == 0
    assert f"stored {{'{topics.alerts}': 2}}" in capsys.readouterr().out
    assert (tmp_path / "data" / "alerts.db").is_file()
    assert main(["alerts", "list"]) == 0
    assert "camp-1" in capsys.readouterr().out

"""Pending approvals in Kafka (issue 13 item 4, issue 15 item 3), on the embedded broker.

Two :class:`KafkaApprovals` instances stand for two hosts (the worker and a laptop running
``distillwatch actions``); an attacker who can produce to the topic but lacks the record
secret tries to approve a suspension. The worker failover test is in
tests/sinks/test_approvals_failover.py."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from streams.integrity import RecordSigner
from streams.sinks.approvals import ApprovalError
from streams.sinks.approvals_kafka import KafkaApprovals, approvals_topic
from tests.conftest import FAST_WORKER_ENV

pytestmark = pytest.mark.integration

SIGNER = RecordSigner(FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"].encode())
OTHER = RecordSigner(b"not-the-workers-secret-0123456789")


def _store(broker, topic: str) -> KafkaApprovals:  # type: ignore[no-untyped-def]
    return KafkaApprovals(broker.bootstrap, topic, SIGNER)


def _request(aid: str, n: int = 8) -> dict:
    return {"alert_id": aid, "entity_id": "camp-1", "detector": "cluster_campaign",
            "severity": "critical", "members": [f"m{i}" for i in range(n)]}


def _forge(broker, topic: str, aid: str) -> int:  # type: ignore[no-untyped-def]
    """Produce every 'approved' record an attacker without the secret could write; how many."""
    from kafka import KafkaProducer

    key = f"d:{aid}".encode()
    value = orjson.dumps({"status": "approved", "decided_by": "mallory", "decided_ts": 1.0,
                          "note": None, "nonce": "f00d"})
    # A genuine signature, taken from a record the attacker may have seen on another key...
    moved = SIGNER.headers(topic, b"d:some-other-alert", value)
    # ...or on the same key with another value (a denial turned into an approval).
    denied = value.replace(b"approved", b"denied")
    forged = [
        (key, value, []),                                   # unsigned
        (key, value, OTHER.headers(topic, key, value)),     # signed with a guessed key
        (key, value, moved),                                # signature moved to this key
        (key, value, SIGNER.headers(topic, key, denied)),   # value altered after signing
        (key, value, [("dw-sig", b"v1:" + b"0" * 64)]),     # well-formed, wrong MAC
    ]
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        for k, v, h in forged:
            p.send(topic, key=k, value=v, headers=h, partition=0)
        p.flush()
    finally:
        p.close()
    return len(forged)


def test_a_decision_from_another_host_reaches_the_worker_once(broker) -> None:  # type: ignore[no-untyped-def]
    topic = approvals_topic(f"dw-appr-{uuid.uuid4().hex[:8]}")

    async def scenario() -> None:
        worker, laptop = _store(broker, topic), _store(broker, topic)
        await worker.start()
        await laptop.start()
        try:
            assert await worker.add_pending(_request("c1", 8)) is True
            # The campaign grew while pending: the request follows it, no second request.
            assert await worker.add_pending(_request("c1", 9)) is False
            [rec] = await laptop.list("pending")
            assert (rec["alert_id"], rec["status"], len(rec["members"])) == ("c1", "pending", 9)
            assert await worker.pending_ids() == {"c1"}

            out = await laptop.decide("c1", approve=True, by="alice", note="hydra")
            assert (out["status"], out["decided_by"], out["note"]) == ("approved", "alice",
                                                                       "hydra")
            with pytest.raises(ApprovalError, match="already approved by alice"):
                await laptop.decide("c1", approve=False, by="bob")
            # A refresh written after the decision (the hook had not seen it) reopens nothing.
            assert await worker.add_pending(_request("c1", 12)) is False
            [taken] = await worker.take_decided()
            assert (taken["status"], len(taken["members"])) == ("approved", 9)
            await worker.mark_processed("c1", "executed")
            assert await worker.take_decided() == []

            # A third host that starts now reads the same history from the topic.
            late = _store(broker, topic)
            await late.start()
            try:
                rec = await late.get("c1")
                assert rec is not None
                assert (rec["status"], rec["result"]) == ("approved", "executed")
                assert await late.take_decided() == []
                with pytest.raises(ApprovalError, match="no approval with id 'nope'"):
                    await late.decide("nope", approve=True, by="alice")
            finally:
                await late.stop()
        finally:
            await worker.stop()
            await laptop.stop()

    asyncio.run(scenario())


def test_two_hosts_deciding_at_once_one_wins(broker) -> None:  # type: ignore[no-untyped-def]
    topic = approvals_topic(f"dw-appr-{uuid.uuid4().hex[:8]}")

    async def scenario() -> None:
        a, b = _store(broker, topic), _store(broker, topic)
        await a.start()
        await b.start()
        try:
            await a.add_pending(_request("c2"))
            await b.get("c2")  # both have read the request
            got = await asyncio.gather(a.decide("c2", approve=True, by="alice"),
                                       b.decide("c2", approve=False, by="bob"),
                                       return_exceptions=True)
            wins = [g for g in got if isinstance(g, dict)]
            losses = [g for g in got if isinstance(g, ApprovalError)]
            assert len(wins) == 1 and len(losses) == 1, got
            # Both hosts agree on the winner: the first decision in the topic.
            ra, rb = await a.get("c2"), await b.get("c2")
            assert ra is not None and rb is not None
            assert ra["status"] == rb["status"] == wins[0]["status"]
            assert len(await a.take_decided()) == 1
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_forged_approvals_are_ignored_and_counted(broker) -> None:  # type: ignore[no-untyped-def]
    topic = approvals_topic(f"dw-appr-{uuid.uuid4().hex[:8]}")

    async def scenario() -> None:
        worker = _store(broker, topic)
        await worker.start()
        try:
            await worker.add_pending(_request("c3"))
            n = await asyncio.to_thread(_forge, broker, topic, "c3")
            assert await worker.take_decided() == []
            rec = await worker.get("c3")
            assert rec is not None and rec["status"] == "pending"
            assert worker.rejected == n
            # Nor does a reader that starts after the forgery see anything else.
            fresh = _store(broker, topic)
            await fresh.start()
            try:
                assert await fresh.pending_ids() == {"c3"}
                assert fresh.rejected == n
                # The genuine decision still works after the forgeries.
                await fresh.decide("c3", approve=False, by="bob")
            finally:
                await fresh.stop()
            [taken] = await worker.take_decided()
            assert (taken["status"], taken["decided_by"]) == ("denied", "bob")
        finally:
            await worker.stop()

    asyncio.run(scenario())

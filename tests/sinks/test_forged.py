"""Forged and poison records on the real broker, tried as an attacker would (issue 11, items 4
and 6): nothing unsigned reaches the suspension hook, and nothing the delivery stage cannot
handle is lost; it is on ``alerts-dlq`` with a reason."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

from streams.integrity import SIG_HEADER, RecordSigner

pytestmark = pytest.mark.integration


def _produce(broker, topic: str, records: list[tuple[bytes | None, bytes, list | None]]) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        for key, value, headers in records:
            p.send(topic, key=key, value=value, headers=headers or [])
        p.flush()
    finally:
        p.close()


def _read_raw(broker, topic: str, until, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the beginning (key, value and headers intact)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or set()]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=300).values():
                out.extend(recs)
            if until(out):
                break
        return out
    finally:
        c.close()


def test_broker_carries_record_headers(broker):
    """The whole scheme rests on Tansu keeping record headers byte for byte."""
    topic = f"hdr-{uuid.uuid4().hex[:8]}"
    signer = RecordSigner(b"k" * 32)
    value = orjson.dumps({"x": 1})
    headers = signer.headers(topic, b"key", value) + [("other", b"\x00\xff")]
    _produce(broker, topic, [(b"key", value, headers)])
    [rec] = _read_raw(broker, topic, until=lambda rs: len(rs) >= 1)
    got = [(k, bytes(v)) for k, v in rec.headers]
    assert got == headers
    assert signer.verify(topic, rec.key, rec.value, rec.headers)
    assert SIG_HEADER == got[0][0]

"""Signed webhooks against a receiver that verifies HMAC signatures and rejects replays; a
receiver that is down for a while; retries exhausted and full queues go to alerts-dlq."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request

import pytest

from streams.sinks.webhook import sign, verified_body, verify
from tests.sinks.helpers import Harness, change
from tests.sinks.receivers import WebhookReceiver

SECRET = "whsec-test-key"


def _post(url: str, headers: dict[str, str], body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_signed_bodies_verify_and_replays_are_rejected(tmp_path):
    rx = WebhookReceiver(SECRET.encode()).start()
    try:
        h = Harness(tmp_path, webhook_urls=f"{rx.base}/hook", webhook_secret=SECRET)
        changes = [change(f"a{i}", score=7.0 + i) for i in range(3)]
        asyncio.run(h.run(changes))
        assert rx.rejected == []
        assert [b["alert"]["entity_id"] for b in rx.accepted] == ["a0", "a1", "a2"]
        body = rx.accepted[0]
        assert body["alert"] == changes[0]  # the change itself travels unchanged
        assert body["runbook_url"] is None  # sinks.runbook_url unset: no (relative) link
        assert body["dashboard_url"].startswith("http://localhost:3000/d/")
        assert body["severity"] == "warning" and body["agreeing_detectors"] == ["account_baseline"]

        path, headers, raw = rx.requests[0]
        fwd = {k: v for k, v in headers.items() if k.startswith("x-distillwatch")}
        fwd["Content-Type"] = "application/json"
        # A captured request sent again is refused...
        assert _post(f"{rx.base}{path}", fwd, raw) == 409
        # ...a tampered body fails the signature...
        assert _post(f"{rx.base}{path}", fwd, raw.replace(b"a0", b"zz")) == 401
        # ...and so does the same request re-signed by someone without the key.
        fwd["x-distillwatch-delivery"] = "other"
        fwd["x-distillwatch-signature"] = "v1=" + "0" * 64
        assert _post(f"{rx.base}{path}", fwd, raw) == 401
        # A receiver whose clock is far ahead sees the timestamp as stale: a replay later on.
        rx.clock = lambda: time.time() + 3600
        fwd.pop("x-distillwatch-signature")
        fwd["x-distillwatch-signature"] = headers["x-distillwatch-signature"]
        fwd["x-distillwatch-delivery"] = "fresh"
        assert _post(f"{rx.base}{path}", fwd, raw) == 401
        assert rx.rejected == ["replayed delivery", "bad signature", "bad signature",
                               "stale timestamp"]
    finally:
        rx.stop()
    assert h.metric("distillwatch_sink_sent_total", sink="webhook") == 3


def test_receiver_down_then_back_nothing_lost_nothing_twice(tmp_path):
    rx = WebhookReceiver(SECRET.encode()).start()
    port = rx.port
    rx.stop()  # down: connections are refused

    async def scenario(h: Harness) -> None:
        await h.dispatcher.start()
        for i in range(6):
            await h.dispatcher.submit(change(f"a{i}"))
        await asyncio.sleep(0.4)  # several refused attempts
        assert rx.accepted == []
        rx.port = port
        rx.start()  # back on the same port
        await asyncio.wait_for(h.dispatcher.join(), 20)
        await h.dispatcher.stop(1.0)

    h = Harness(tmp_path, webhook_urls=f"http://127.0.0.1:{port}/hook", webhook_secret=SECRET,
                max_attempts=50)
    try:
        asyncio.run(scenario(h))
    finally:
        rx.stop()
    ids = [b["alert"]["entity_id"] for b in rx.accepted]
    assert ids == [f"a{i}" for i in range(6)]  # all of them, in order, once each
    assert len({b["delivery_id"] for b in rx.accepted}) == 6
    assert rx.rejected == [] and h.dlq == []
    assert h.metric("distillwatch_sink_retried_total", sink="webhook") >= 2
    assert h.metric("distillwatch_sink_queued", sink="webhook") == 0


def test_redelivered_change_is_sent_once(tmp_path):
    rx = WebhookReceiver(SECRET.encode()).start()
    try:
        h = Harness(tmp_path, webhook_urls=f"{rx.base}/hook", webhook_secret=SECRET)
        c = change("a1")
        asyncio.run(h.run([c, dict(c), change("a1", state="updated", score=15.0), dict(c)]))
    finally:
        rx.stop()
    assert [b["alert"]["state"] for b in rx.accepted] == ["opened", "updated"]


def test_retries_exhausted_go_to_dlq(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    rx = WebhookReceiver(SECRET.encode(), fail_first=1000).start()
    url = f"{rx.base}/hook/T0KEN-IN-URL"
    try:
        h = Harness(tmp_path, webhook_urls=url, webhook_secret=SECRET, max_attempts=3)
        asyncio.run(h.run([change("a1")]))
    finally:
        rx.stop()
    assert len(rx.requests) == 3
    [rec] = h.dlq
    assert (rec["sink"], rec["reason"], rec["attempts"]) == ("webhook", "retries_exhausted", 3)
    assert rec["envelope"]["alert"]["entity_id"] == "a1"
    assert "T0KEN-IN-URL" not in str(rec) and "T0KEN-IN-URL" not in caplog.text
    assert SECRET not in caplog.text
    assert h.metric("distillwatch_sink_failed_total", sink="webhook") == 1
    assert h.metric("distillwatch_sink_retried_total", sink="webhook") == 2
    assert h.metric("distillwatch_sink_dead_lettered_total", sink="webhook",
                    reason="retries_exhausted") == 1


def test_full_queue_spills_to_dlq_without_waiting(tmp_path):
    rx = WebhookReceiver(SECRET.encode()).start()
    port = rx.port
    rx.stop()

    async def scenario(h: Harness) -> None:
        await h.dispatcher.start()
        # Submitting returns while the receiver is still down: nothing waits on a sink.
        for i in range(10):
            await h.dispatcher.submit(change(f"a{i}"))
        await asyncio.sleep(0.1)
        rx.port = port
        rx.start()
        await asyncio.wait_for(h.dispatcher.join(), 20)
        await h.dispatcher.stop(1.0)

    h = Harness(tmp_path, webhook_urls=f"http://127.0.0.1:{port}/hook", webhook_secret=SECRET,
                queue_size=3, max_attempts=100)
    try:
        asyncio.run(scenario(h))
    finally:
        rx.stop()
    spilled = [
        r["alert_id"] for r in h.dlq if r["reason"] == "queue_full" and r["sink"] == "webhook"
    ]
    delivered = [b["alert"]["alert_id"] for b in rx.accepted]
    # Nothing silently lost: every alert was either delivered or written to the DLQ.
    assert spilled and delivered
    assert sorted(spilled + delivered) == sorted(f"account-a{i}-account_baseline"
                                                 for i in range(10))
    assert len(delivered) <= 4  # the queue (3) plus the one in flight


def test_stop_dead_letters_what_is_left(tmp_path):
    rx = WebhookReceiver(SECRET.encode(), fail_first=1000).start()  # never accepts

    async def scenario(h: Harness) -> int:
        await h.dispatcher.start()
        for i in range(4):
            await h.dispatcher.submit(change(f"a{i}"))
        await asyncio.sleep(0.1)
        return await h.dispatcher.stop(0.2)

    try:
        h = Harness(tmp_path, webhook_urls=f"{rx.base}/hook", webhook_secret=SECRET,
                    max_attempts=1000)
        asyncio.run(scenario(h))
    finally:
        rx.stop()
    shut = [r["alert_id"] for r in h.dlq if r["sink"] == "webhook"]
    # The one in flight and the three queued: all four, none lost, none twice.
    assert sorted(shut) == sorted(f"account-a{i}-account_baseline" for i in range(4))
    assert {r["reason"] for r in h.dlq if r["sink"] == "webhook"} == {"shutdown"}
    assert h.metric("distillwatch_sink_queued", sink="webhook") == 0


GOOD_TS = "1700000000"
GOOD_BODY = b'{"delivery_id": "d1", "alert": {}}'


@pytest.mark.parametrize(
    ("timestamp", "body", "signature"),
    [
        (GOOD_TS, GOOD_BODY, None),  # header missing
        (GOOD_TS, GOOD_BODY, ""),
        (GOOD_TS, GOOD_BODY, "v1=" + "\u00e9" * 64),  # non-ASCII, right length
        (GOOD_TS, GOOD_BODY, b"v1=\xff" + b"0" * 63),  # non-ASCII bytes
        (GOOD_TS, GOOD_BODY, "v1=" + "0" * 63),  # wrong length
        (GOOD_TS, GOOD_BODY, "v1=" + "0" * 6400),
        (GOOD_TS, GOOD_BODY, "SIG"),  # the right one with the scheme swapped, below
        (GOOD_TS, GOOD_BODY, 12345),
        (None, GOOD_BODY, "SIG"),
        ("", GOOD_BODY, "SIG"),
        ("\u0661\u0667" + "0" * 8, GOOD_BODY, "SIG"),  # Arabic-Indic digits: int() takes them
        ("+1700000000", GOOD_BODY, "SIG"),
        (" 1700000000", GOOD_BODY, "SIG"),
        ("1700000000.0", GOOD_BODY, "SIG"),
        ("9" * 5000, GOOD_BODY, "SIG"),
        ("1699990000", GOOD_BODY, "SIG"),  # stale (signed for this timestamp below)
        (GOOD_TS, None, "SIG"),
        (GOOD_TS, "not bytes", "SIG"),
    ],
)
def test_verify_answers_false_and_never_raises(timestamp, body, signature):
    if signature == "SIG":
        ts = timestamp if isinstance(timestamp, str) and timestamp.isascii() else GOOD_TS
        try:
            signature = sign(b"k", int(ts), GOOD_BODY)
        except ValueError:
            signature = sign(b"k", int(GOOD_TS), GOOD_BODY)
        if timestamp == GOOD_TS and body == GOOD_BODY:
            signature = "v2=" + signature[3:]
    assert verify(b"k", timestamp, body, signature, now=1700000010) is False
    assert verified_body(b"k", timestamp, body, signature, now=1700000010) is None


def test_verify_accepts_the_real_thing_as_str_or_bytes():
    sig = sign(b"k", int(GOOD_TS), GOOD_BODY)
    assert verify(b"k", GOOD_TS, GOOD_BODY, sig, now=1700000010)
    assert verify("k", GOOD_TS.encode(), GOOD_BODY, sig.encode(), now=1700000010)
    assert not verify(b"other", GOOD_TS, GOOD_BODY, sig, now=1700000010)


def test_the_deduplication_key_is_covered_by_the_signature(tmp_path):
    rx = WebhookReceiver(SECRET.encode()).start()
    try:
        h = Harness(tmp_path, webhook_urls=f"{rx.base}/hook", webhook_secret=SECRET)
        asyncio.run(h.run([change("a0")]))
        path, headers, raw = rx.requests[0]
        ts, sig = headers["x-distillwatch-timestamp"], headers["x-distillwatch-signature"]
        doc = verified_body(SECRET, ts, raw, sig)
        assert doc is not None and doc["delivery_id"] == headers["x-distillwatch-delivery"]
        # Changing the recommended key (the body's delivery_id) breaks the signature...
        forged = raw.replace(doc["delivery_id"].encode(), b"f" * len(doc["delivery_id"]))
        assert forged != raw and not verify(SECRET.encode(), ts, forged, sig)
        assert verified_body(SECRET, ts, forged, sig) is None
        # ...while the header is outside it: a replay with a new header still verifies, so
        # only the body's id catches it. The receiver built on the docs refuses the replay.
        fwd = {k: v for k, v in headers.items() if k.startswith("x-distillwatch")}
        fwd["x-distillwatch-delivery"] = "a-fresh-looking-id"
        fwd["Content-Type"] = "application/json"
        assert verify(SECRET.encode(), ts, raw, sig)
        assert _post(f"{rx.base}{path}", fwd, raw) == 409
        assert rx.rejected == ["replayed delivery"] and len(rx.accepted) == 1
    finally:
        rx.stop()

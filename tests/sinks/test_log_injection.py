"""Attacker-chosen ids never forge log lines: every message a worker logs about an alert is
one line of printable text, whatever the entity or alert id holds."""

from __future__ import annotations

import asyncio
import logging

from streams.app import log_change
from tests.sinks.helpers import Harness, change
from tests.sinks.receivers import SlackReceiver, WebhookReceiver

EVIL = "a\nINFO forged line\x1b[31m\r\u2028x"


def _assert_one_clean_line(records: list[logging.LogRecord]) -> None:
    assert records, "expected log records"
    for r in records:
        msg = r.getMessage()
        assert msg.isprintable(), repr(msg)  # no \n, \r, ESC, U+2028...
        assert "\nINFO forged" not in msg


def test_alert_agent_log_line_escapes_ids(caplog):
    caplog.set_level(logging.INFO, logger="streams.app")
    log_change({"alert_id": EVIL, "state": "opened", "entity_type": "account",
                "entity_id": EVIL * 100, "severity": "warning\n", "score": 9.0})
    _assert_one_clean_line(caplog.records)
    msg = caplog.records[0].getMessage()
    assert "a\\nINFO forged line\\x1b[31m" in msg  # still readable, escaped
    assert len(msg) < 700  # the 1,900-character id was capped


def test_sink_retry_and_give_up_lines_escape_ids(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="streams")
    rx = WebhookReceiver(b"k", fail_first=1).start()
    slack = SlackReceiver().start()
    try:
        h = Harness(tmp_path, webhook_urls=f"{rx.base}/hook", webhook_secret="k",
                    slack_webhook_url=slack.base + "/revoked")  # 404: gives up at once
        c = change(EVIL, alert_id=EVIL)
        asyncio.run(h.run([c, c]))  # the second is a redelivery: the "already" debug line
    finally:
        rx.stop()
        slack.stop()
    lines = [r for r in caplog.records if r.name.startswith("streams")]
    texts = " | ".join(r.getMessage() for r in lines)
    assert "retrying" in texts and "gave up" in texts and "already delivered" in texts
    _assert_one_clean_line(lines)

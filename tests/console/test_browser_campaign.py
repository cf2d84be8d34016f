"""End to end in a real browser: a hydra campaign through a real worker on the embedded
broker, into the store, onto the console; the on-call engineer finds the campaign alert,
opens it, approves its suspension; the audit trail on ``actions`` has the console's signed
record and the worker's approval and suspensions. A viewer cannot approve and a POST
without the CSRF token is refused.

Screenshots of the queue and the alert page go to the test's tmp dir, and to docs/img when
``DISTILLWATCH_RENDER_DIR=docs/img`` is set (docs/oncall.md shows them)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import orjson
import pytest

from streams.integrity import RecordSigner
from tests.conftest import FAST_WORKER_ENV, isolated_topics, produce, read_topic
from tests.console.conftest import login
from tests.console.harness import USERS, ConsoleProcess
from tests.detectors.synth import benign, hydra, merged

pytestmark = pytest.mark.integration

SIGNER = RecordSigner(FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"].encode())


def _shot(page, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(tmp_path / name), full_page=True)
    out = os.environ.get("DISTILLWATCH_RENDER_DIR")
    if out:
        page.screenshot(path=str(Path(out) / name), full_page=True)


def _until(page, check, timeout: float, what: str, log) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen in {timeout}s\n{log()}")
        time.sleep(1.0)
        page.reload()


def test_find_open_and_approve_a_campaign_in_the_browser(
    broker, worker_factory, browser, tmp_path
) -> None:
    topics, env = isolated_topics()
    # The console reads the worker's approvals topic, <app_id>-approvals: one app id.
    env = {**env, "DISTILLWATCH_WORKER__APP_ID": f"dw-test-{uuid.uuid4().hex[:8]}"}
    worker = worker_factory(**env, DISTILLWATCH_WINDOWS__SIZE_S="60",
                            DISTILLWATCH_WINDOWS__LATENESS_S="10",
                            DISTILLWATCH_SINKS__APPROVALS_POLL_S="0.5")
    console = ConsoleProcess(broker.url, tmp_path, env, data_dir=tmp_path / "data")
    try:
        start = time.time() - 3 * 3600 - 300
        events = merged(hydra(n=80, hours=3, start=start), benign(n=120, hours=3, start=start))
        produce(broker, topics.requests,
                [(e.account_id.encode(), orjson.dumps(e.to_dict())) for e in events])

        def logs() -> str:
            return f"--- worker\n{worker.log(3000)}\n--- console\n{console.log()}"

        page = login(browser, console.url, "alice", USERS["alice"][1])
        campaign = page.locator("tr.sev-critical, tr.sev-warning").filter(has_text="cluster")
        _until(page, lambda: campaign.count() > 0, 120, "the campaign alert", logs)
        _shot(page, tmp_path, "console-queue.png")
        page.locator("a.alert-link", has_text="cluster").first.click()
        page.wait_for_url("**/alerts/*")
        alert_url = page.url
        aid = page.locator("#alert-id").inner_text()
        _until(page, lambda: page.get_by_text("Waiting for approval").count() > 0, 60,
               "the pending suspension", logs)
        assert page.locator("svg.timeline").count() == 1
        assert page.get_by_text("shared by members:").count() == 1
        assert page.locator("ul.members li").count() > 50

        # A viewer sees the request but has no button, and a forged POST is refused.
        viewer = login(browser, console.url, "victor", USERS["victor"][1])
        viewer.goto(alert_url)
        assert viewer.get_by_text("Only approvers can decide").is_visible()
        assert viewer.get_by_role("button", name="Approve suspension").count() == 0
        token = viewer.locator("input[name=csrf]").first.get_attribute("value")
        r = viewer.request.post(alert_url + "/decide", max_redirects=0,
                                form={"csrf": token, "verdict": "approve"})
        assert r.status == 403
        # The approver's own session, but no CSRF token: refused.
        r = page.request.post(alert_url + "/decide", max_redirects=0,
                              form={"verdict": "approve", "note": "no token"})
        assert r.status == 403 and "CSRF" in r.text()

        page.fill("#approval-note", "hydra: shared card and /24")
        _shot(page, tmp_path, "console-alert.png")
        page.get_by_role("button", name="Approve suspension").click()
        assert page.locator(".flash").inner_text().startswith("Suspension approved;")
        assert page.locator("#approval-status").inner_text() == "approved"

        # The audit trail: the console's signed record, then the worker's decision and the
        # suspensions it carried out (dry-run: recorded, not executed).
        def trail(rs):  # type: ignore[no-untyped-def]
            return [r for r in rs if r.get("alert_id") == aid]

        def done(rs):  # type: ignore[no-untyped-def]
            return any(r["decision"] == "approved" for r in trail(rs))

        actions = read_topic(broker, topics.actions, until=done, timeout=30)
        mine = [r for r in trail(actions) if r["decision"] == "console"]
        assert [(r["action"], r["by"], r["role"], r["note"]) for r in mine] == [
            ("approve", "alice", "approver", "hydra: shared card and /24")]
        [ok] = [r for r in trail(actions) if r["decision"] == "approved"]
        assert ok["by"] == "alice" and ok["count"] == mine[0]["count"] > 50
        assert not [r for r in trail(actions) if r["decision"] in ("executed", "failed")]
        _signed(broker, topics.actions, aid)
        # ...and the page shows it once the store has read it back.
        _until(page, lambda: page.locator("#decisions").get_by_text("approved").count() > 0,
               30, "the worker's approval on the page", logs)
        viewer.context.close()
        page.context.close()
    finally:
        console.stop()


def _signed(broker, topic: str, aid: str) -> None:  # type: ignore[no-untyped-def]
    """Every record about ``aid`` on ``topic`` carries a valid signature."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        seen = 0
        for recs in c.poll(timeout_ms=2000).values():
            for r in recs:
                if orjson.loads(r.value).get("alert_id") == aid:
                    assert SIGNER.verify(topic, r.key, r.value, r.headers)
                    seen += 1
        assert seen
    finally:
        c.close()

"""The console as an attacker meets it: no page without a login, no action without the
approver role and the session's CSRF token, no forged session, no markup from alert data;
and every action it takes is a signed record on Kafka.

One console process serves all tests here, on a store fed signed records through the real
broker (the browser test in test_browser_campaign.py feeds it from a real worker)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.integrity import RecordSigner
from streams.sinks.approvals import ApprovalStore, approvals_path
from streams.store.db import open_store
from streams.store.queries import list_alerts
from streams.store.writer import encode
from tests.conftest import FAST_WORKER_ENV, isolated_topics
from tests.console.conftest import login
from tests.console.harness import USERS, ConsoleProcess
from tests.store.data import account, campaign

pytestmark = pytest.mark.integration

SIGNER = RecordSigner(FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"].encode())
CAMP = campaign()[0]["alert_id"]
XSS = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


def _records(topics) -> list[tuple[str, bytes, bytes]]:  # type: ignore[no-untyped-def]
    out = []
    hostile = {**account("bad0000000000000bad0"), "entity_id": XSS, "detector": "a<b>c"}
    for c in [*campaign(n=3), account(), hostile]:
        out.append((topics.alerts, c["alert_id"].encode(), encode(c)))
    return out


@pytest.fixture(scope="module")
def fed(broker, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("console")
    topics, env = isolated_topics()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for topic, key, value in _records(topics):
        p.send(topic, key=key, value=value, headers=SIGNER.headers(topic, key, value))
    p.flush()
    p.close()
    ApprovalStore(approvals_path(tmp / "data")).add_pending({
        "alert_id": CAMP, "entity_id": "camp-1", "detector": "cluster_campaign",
        "members": [f"acct-{j}" for j in range(30)]})
    # The file backend, so the tests can set up and read approvals without a worker.
    console = ConsoleProcess(broker.url, tmp,
                             {**env, "DISTILLWATCH_SINKS__APPROVALS_STORE": "file"})
    engine = open_store(f"sqlite:///{tmp / 'console-store.db'}")
    deadline = time.monotonic() + 40
    while len(list_alerts(engine)) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert len(list_alerts(engine)) == 3, console.log()
    yield console, topics, tmp
    console.stop()


def _csrf(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator("input[name=csrf]").first.get_attribute("value")


def _status(tmp) -> str:  # type: ignore[no-untyped-def]
    return ApprovalStore(approvals_path(tmp / "data")).get(CAMP)["status"]


def test_pages_need_a_login_and_wrong_passwords_are_throttled(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, _, _ = fed
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(console.url + f"alerts/{CAMP}")
    assert page.url == console.url + "login"
    r = ctx.request.get(console.url + f"alerts/{CAMP}/members.csv", max_redirects=0)
    assert r.status == 302
    for _ in range(5):
        page.goto(console.url + "login")
        page.fill("input[name=user]", "mallory")
        page.fill("input[name=password]", "guess")
        with page.expect_response(console.url + "login") as resp:
            page.click("button[type=submit]")
        assert resp.value.status == 401, resp.value.text()[-600:]
    page.goto(console.url + "login")
    page.fill("input[name=user]", "mallory")
    page.fill("input[name=password]", "guess")
    with page.expect_response(console.url + "login") as resp:
        page.click("button[type=submit]")
    assert resp.value.status == 429
    # A login POST that did not come from the login form (no double-submit token).
    r = ctx.request.post(console.url + "login", form={"user": "alice",
                                                      "password": USERS["alice"][1]},
                         max_redirects=0)
    assert r.status == 403
    ctx.close()


def test_a_viewer_cannot_approve_even_with_a_valid_csrf_token(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, _, tmp = fed
    page = login(browser, console.url, "victor", USERS["victor"][1])
    page.goto(console.url + f"alerts/{CAMP}")
    assert page.get_by_text("Waiting for approval").is_visible()
    assert page.get_by_role("button", name="Approve suspension").count() == 0
    assert page.get_by_text("Only approvers can decide").is_visible()
    r = page.request.post(console.url + f"alerts/{CAMP}/decide", max_redirects=0,
                          form={"csrf": _csrf(page), "verdict": "approve", "note": "x"})
    assert r.status == 403 and "approvers only" in r.text()
    for path in ("ack", "assign", "false-positive"):
        r = page.request.post(console.url + f"alerts/{CAMP}/{path}", max_redirects=0,
                              form={"csrf": _csrf(page)})
        assert r.status == 403, path
    assert _status(tmp) == "pending"
    page.context.close()


def test_posts_without_the_sessions_csrf_token_are_refused(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, _, tmp = fed
    viewer = login(browser, console.url, "victor", USERS["victor"][1])
    page = login(browser, console.url, "alice", USERS["alice"][1])
    page.goto(console.url + f"alerts/{CAMP}")
    for form in ({"verdict": "approve"},                            # no token
                 {"verdict": "approve", "csrf": ""},
                 {"verdict": "approve", "csrf": _csrf(page)[:-2]},  # truncated
                 {"verdict": "approve", "csrf": _csrf(viewer)}):    # another session's
        r = page.request.post(console.url + f"alerts/{CAMP}/decide", form=form,
                              max_redirects=0)
        assert r.status == 403 and "CSRF" in r.text(), (form, fed[0].log()[-3000:])
    # A cross-site form post: the SameSite=Strict cookie is not sent, so it is not even
    # logged in.
    evil = browser.new_context().new_page()
    r = evil.request.post(console.url + f"alerts/{CAMP}/decide",
                          form={"verdict": "approve"}, max_redirects=0)
    assert r.status == 401
    assert _status(tmp) == "pending"
    viewer.context.close()
    page.context.close()


def test_a_forged_or_edited_session_cookie_is_not_a_session(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, _, _ = fed
    page = login(browser, console.url, "victor", USERS["victor"][1])
    [cookie] = [c for c in page.context.cookies() if c["name"] == "dw_session"]
    body, mac = cookie["value"].split(".")
    data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["role"] = "approver"
    forged = base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=") + "." + mac
    page.context.add_cookies([{**cookie, "value": forged}])
    page.goto(console.url)
    assert page.url == console.url + "login"
    page.context.close()


def test_alert_data_is_text_never_markup(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, _, _ = fed
    page = login(browser, console.url, "victor", USERS["victor"][1])
    assert page.get_by_text(XSS).count() == 1  # shown, as text
    page.click(f"a.alert-link:has-text('{XSS[:20]}')")
    assert page.get_by_text(XSS).count() >= 1
    assert page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("a[href*='#a%3Cb%3Ec']").count() == 1  # the runbook link, encoded
    page.context.close()


def test_actions_are_signed_audit_records_and_a_false_positive_is_a_label(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, topics, _ = fed
    aid = account()["alert_id"]
    page = login(browser, console.url, "alice", USERS["alice"][1])
    page.goto(console.url + f"alerts/{aid}")
    page.click("button:has-text('Acknowledge')")
    assert page.get_by_text("Alert acknowledged.").is_visible()
    page.fill("input[name=assignee]", "bob")
    page.click("button:has-text('Assign')")
    page.fill("form[action$=false-positive] input[name=note]", "internal load test")
    page.click("button:has-text('Mark false positive')")
    assert page.get_by_text("Marked false positive by alice: internal load test").is_visible()
    assert page.locator("#decisions").get_by_text("false_positive").count() == 1
    page.goto(console.url + "?show=all")
    row = page.locator("tr", has_text="ramp-1")
    assert "ack alice" in row.inner_text() and "→ bob" in row.inner_text()

    got = _read(broker_url=console, topics=topics)
    audit = [r for t, r in got if t == topics.actions and r["alert_id"] == aid]
    assert [(r["action"], r["by"], r["role"]) for r in audit] == [
        ("acknowledge", "alice", "approver"), ("assign", "alice", "approver"),
        ("false_positive", "alice", "approver")]
    assert audit[1]["assignee"] == "bob" and audit[2]["note"] == "internal load test"
    [label] = [r for t, r in got if t == topics.labels]
    assert (label["label"], label["alert_id"], label["entity_id"]) == (
        "false_positive", aid, "ramp-1")
    page.context.close()


def _read(broker_url, topics):  # type: ignore[no-untyped-def]
    """(topic, record) of every record on actions and labels, each verified signed."""
    import re

    bootstrap = re.search(r"--broker', 'kafka://([^']+)'", str(broker_url.proc.args))
    addr = bootstrap.group(1) if bootstrap else None
    c = KafkaConsumer(bootstrap_servers=addr, enable_auto_commit=False)
    out = []
    try:
        tps = [TopicPartition(t, p) for t in (topics.actions, topics.labels)
               for p in (c.partitions_for_topic(t) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            batch = c.poll(timeout_ms=300)
            for tp, recs in batch.items():
                for r in recs:
                    assert SIGNER.verify(tp.topic, r.key, r.value, r.headers), r
                    out.append((tp.topic, orjson.loads(r.value)))
            if not batch and out:
                break
    finally:
        c.close()
    return sorted(out, key=lambda tr: tr[1]["ts"])


def test_evaluate_reads_the_consoles_verdicts_from_the_labels_topic(
    fed, broker, tmp_path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """After the false-positive test above: evaluate scores the alerts against the signed
    verdicts on the labels topic, and ignores a forged one."""
    import json

    from streams.cli import main

    _, topics, _ = fed
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    p.send(topics.labels, key=CAMP.encode(), value=encode(
        {"label": "false_positive", "alert_id": CAMP, "by": "mallory"}))  # unsigned
    p.flush()
    p.close()
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(b"".join(value + b"\n" for _, _, value in _records(topics)))
    monkeypatch.setenv("DISTILLWATCH_BROKER__URL", broker.url)
    monkeypatch.setenv("DISTILLWATCH_TOPICS__LABELS", topics.labels)
    monkeypatch.setenv("DISTILLWATCH_WORKER__RECORD_SECRET",
                       FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"])
    assert main(["evaluate", "--alerts", str(alerts), "--verdicts", "topic", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdicts"] == 1
    assert out["by_detector"]["account_baseline"] == {"alerts": 1, "false_positive": 1,
                                                       "share": 1.0}
    assert out["by_detector"]["cluster_campaign"]["false_positive"] == 0


def test_the_queue_filters_and_sorts(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, _, _ = fed
    page = login(browser, console.url, "victor", USERS["victor"][1])

    def entities(query: str) -> list[str]:
        page.goto(console.url + "?" + query)
        return [t.split()[1] for t in page.locator("a.alert-link").all_inner_texts()]

    hostile = XSS.split()[0]
    assert sorted(entities("show=all")) == sorted(["camp-1", "ramp-1", hostile])
    assert entities("show=all&min_members=25") == ["camp-1"]        # 30 members
    assert entities("show=all&min_members=31") == []
    assert entities("show=all&min_harvest=1000000") == ["camp-1"]   # 1.2M tokens
    assert entities("severity=critical") == ["camp-1"]
    assert len(entities("min_ratio=1.5")) == 3                      # 2.75, 1.58, 1.58
    assert entities("min_ratio=2") == ["camp-1"]
    assert entities("min_ratio=2.8") == []
    # Opened in 2027 (T0): a negative age, so "at most 1 h old" keeps them all.
    assert len(entities("max_age_h=1")) == 3
    # Junk in a filter is no filter, never an error page.
    assert sorted(entities("min_members=nan&max_age_h=inf&min_ratio=x")) == sorted(
        entities(""))
    assert entities("sort=members")[0] == "camp-1"
    assert entities("sort=ratio")[0] == "camp-1"
    page.context.close()


def test_member_export_is_a_csv_download(fed, browser) -> None:  # type: ignore[no-untyped-def]
    console, _, _ = fed
    page = login(browser, console.url, "victor", USERS["victor"][1])
    page.goto(console.url + f"alerts/{CAMP}")
    with page.expect_download() as dl:
        page.click("text=Export CSV")
    assert dl.value.suggested_filename == f"members-{CAMP}.csv"
    lines = Path(dl.value.path()).read_text().splitlines()
    assert lines[0] == "account_id,alert_id,entity_id" and len(lines) == 1 + 30
    assert lines[1] == f"acct-0,{CAMP},camp-1"
    page.context.close()

"""Slack sink against a Slack-compatible receiver on 127.0.0.1 (Block Kit validated, 429s)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from streams.config import ConsoleConfig, SinksConfig
from streams.delivery import build_dispatcher
from tests.sinks.helpers import Harness, change
from tests.sinks.receivers import SlackReceiver, validate_block_kit

MEMBERS = [f"m{i}" for i in range(40)]


def _campaign() -> list[dict]:
    """A cluster alert that escalates, member-account alerts, an unrelated account, the end."""
    return [
        change("tmpl:abc", entity_type="cluster", detector="template_cluster",
               members=MEMBERS, score=8.0),
        *(change(m, ts=1_000_010.0) for m in MEMBERS[:5]),
        change("tmpl:abc", entity_type="cluster", detector="template_cluster",
               state="updated", members=MEMBERS, score=12.0, ts=1_000_060.0),
        change("tmpl:abc", entity_type="cluster", detector="template_cluster",
               state="updated", members=MEMBERS, score=20.0, severity="critical",
               ts=1_000_120.0),
        change("lone-1", ts=1_000_130.0),
        change("tmpl:abc", entity_type="cluster", detector="template_cluster",
               state="resolved", members=MEMBERS, score=20.0, severity="critical",
               ts=1_000_400.0),
    ]


def test_webhook_mode_groups_escalates_and_honours_429(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    slack = SlackReceiver(rate_limit_every=3, retry_after="0.3").start()
    secret_path = "/services/T000/B000/s3cr3tW3bh00kPart"
    try:
        h = Harness(tmp_path, slack_webhook_url=slack.base + secret_path)
        asyncio.run(h.run(_campaign()))
    finally:
        slack.stop()
    assert slack.invalid == []
    # The cluster opens (1), escalates to critical (2); its members' own alerts are folded
    # into it; the unrelated account gets its own message (3); updates and the resolution
    # cannot edit a webhook message and are not posted.
    headers = [p["blocks"][0]["text"]["text"] for p in slack.posts]
    assert len(slack.posts) == 3, headers
    assert "cluster tmpl:abc" in headers[0] and "WARNING" in headers[0]
    assert "CRITICAL" in headers[1] and slack.posts[1]["text"].startswith("Escalated")
    assert "account lone-1" in headers[2]
    assert slack.limited >= 1
    assert h.metric("distillwatch_sink_sent_total", sink="slack") == 3
    assert h.metric("distillwatch_sink_retried_total", sink="slack") == slack.limited
    assert h.metric("distillwatch_sink_failed_total", sink="slack") == 0
    assert h.dlq == []
    # About one request per interval: never two closer than the configured spacing allows.
    gaps = [b - a for a, b in zip(slack.times, slack.times[1:], strict=False)]
    assert min(gaps) >= 0.04
    # Members count, runbook and dashboard links are in the message.
    body = str(slack.posts[0]["blocks"])
    assert "*Members*\\n40" in body and "Grafana dashboard" in body
    # No sinks.runbook_url: no runbook link at all, never the old relative text.
    assert "Runbook" not in body and "docs/detectors.md" not in body
    assert "s3cr3tW3bh00kPart" not in caplog.text


def test_bot_mode_posts_once_and_edits_in_place(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    slack = SlackReceiver(token="xoxb-s3cr3t-t0ken", rate_limit_every=4,
                          retry_after="0.2").start()
    try:
        h = Harness(tmp_path, slack_bot_token="xoxb-s3cr3t-t0ken", slack_channel="C42",
                    slack_api_url=slack.base + "/api",
                    runbook_url="https://runbooks.example/docs/detectors.md")
        asyncio.run(h.run(_campaign()))
    finally:
        slack.stop()
    assert slack.invalid == []
    posted = [p["blocks"][0]["text"]["text"] for p in slack.posts]
    # One message for the campaign, one for the unrelated account; never a duplicate.
    assert len(posted) == 2, posted
    cluster_ts = next(ts for ts, p in slack.messages.items() if "tmpl:abc" in p["text"])
    edits = [u for u in slack.updates if u["ts"] == cluster_ts]
    assert len(edits) == 3  # two updates and the resolution
    final = slack.messages[cluster_ts]
    assert "RESOLVED" in final["blocks"][0]["text"]["text"]
    assert "<https://runbooks.example/docs/detectors.md#template_cluster|" in str(final)
    assert "5 member account alert(s) folded" in str(final)
    assert all(u["channel"] == "C42" for u in slack.updates)
    assert "s3cr3t-t0ken" not in caplog.text


def test_untrusted_ids_are_escaped(tmp_path):
    slack = SlackReceiver().start()
    try:
        h = Harness(tmp_path, slack_webhook_url=slack.base + "/services/x")
        asyncio.run(h.run([change("<!channel> <@U1|boss>", alert_id="evil")]))
    finally:
        slack.stop()
    assert slack.invalid == [] and len(slack.posts) == 1
    assert "&lt;!channel&gt;" in str(slack.posts[0]["blocks"])


def test_permanent_error_goes_to_dlq_without_retry(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    slack = SlackReceiver().start()
    try:
        # Wrong path: the receiver answers 404 no_service, which retrying cannot fix.
        h = Harness(tmp_path, slack_webhook_url=slack.base + "/hooks/revoked-S3CRET")
        asyncio.run(h.run([change("a1")]))
    finally:
        slack.stop()
    assert len(slack.requests) == 1
    assert [(r["sink"], r["reason"], r["attempts"]) for r in h.dlq] == [
        ("slack", "permanent_error", 1)
    ]
    assert "HTTP 404" in h.dlq[0]["error"]
    assert "S3CRET" not in str(h.dlq) and "S3CRET" not in caplog.text
    assert h.dlq[0]["envelope"]["alert"]["entity_id"] == "a1"


def test_flood_guard_digests_new_entities_past_the_budget(tmp_path):
    slack = SlackReceiver(token="xoxb-t").start()
    try:
        h = Harness(tmp_path, slack_bot_token="xoxb-t", slack_channel="C1",
                    slack_api_url=slack.base + "/api", slack_new_messages_per_minute=3)
        burst = [change(f"lone-{i}", ts=1_000_000.0 + i) for i in range(12)]
        # A suppressed entity's later update does not give it a message either.
        burst.append(change("lone-7", state="updated", score=30.0, ts=1_000_100.0))
        asyncio.run(h.run(burst))
    finally:
        slack.stop()
    assert slack.invalid == []
    own = [p for p in slack.posts if "Alert flood" not in p["text"]]
    digests = [p for p in slack.posts if "Alert flood" in p["text"]]
    assert [p["text"].split(":")[0] for p in own] == ["[WARNING] account lone-0",
                                                     "[WARNING] account lone-1",
                                                     "[WARNING] account lone-2"]
    # 9 suppressed: one digest message, edited at the counts 2 and 5 (1-2-5 steps).
    assert len(digests) == 1
    edits = [u["text"] for u in slack.updates]
    assert edits == ["Alert flood: 2+ more alerting entities not posted individually",
                     "Alert flood: 5+ more alerting entities not posted individually"]
    assert "`account lone-3`" in str(slack.messages[next(
        ts for ts, m in slack.messages.items() if "Alert flood" in m["text"])])


def test_restart_keeps_editing_the_same_message(tmp_path):
    """A worker restart loses the in-memory groups; the message log in data_dir keeps the
    campaign on its one message (bot mode edits it; webhook mode does not post again)."""
    cl = change("tmpl:r", entity_type="cluster", detector="template_cluster",
                members=MEMBERS, score=8.0)
    upd = {**cl, "state": "updated", "score": 16.0, "ts": cl["ts"] + 60}
    slack = SlackReceiver(token="xoxb-r").start()
    try:
        for batch in ([cl], [upd]):  # two worker lifetimes, one data_dir
            h = Harness(tmp_path, slack_bot_token="xoxb-r", slack_channel="C1",
                        slack_api_url=slack.base + "/api")
            asyncio.run(h.run(batch))
        assert len(slack.posts) == 1 and len(slack.updates) == 1
        assert slack.updates[0]["ts"] == next(iter(slack.messages))
        resolved = {**upd, "state": "resolved", "ts": cl["ts"] + 600}
        h = Harness(tmp_path, slack_bot_token="xoxb-r", slack_channel="C1",
                    slack_api_url=slack.base + "/api")
        asyncio.run(h.run([resolved]))
        assert "RESOLVED" in slack.updates[-1]["text"]
        # Resolved: forgotten, so the entity's next incident is a new message.
        assert "tmpl:r" not in (tmp_path / "data" / "slack_messages.json").read_text()
    finally:
        slack.stop()

    hook_dir = tmp_path / "webhook-mode"
    slack = SlackReceiver().start()
    try:
        for batch in ([cl], [upd]):
            h = Harness(hook_dir, slack_webhook_url=slack.base + "/services/x")
            asyncio.run(h.run(batch))
    finally:
        slack.stop()
    assert len(slack.posts) == 1


# What an attacker who can write to `alerts` (or choose account ids) puts in every string.
EVIL = "x`*bold*` <!channel> <https://evil.example|click> _it_ ~s~ \nFORGED\x1b[31m"
_SPAN = re.compile(r"`[^`]*`")
_LINK_TARGET = re.compile(r"<https?://[^|<> ]*\|")  # our own links: the target is not markup


def _mrkdwn_texts(payload: dict) -> list[str]:
    out = []
    for b in payload["blocks"]:
        if b["type"] == "section":
            out += [b["text"]["text"]] if "text" in b else []
            out += [f["text"] for f in b.get("fields", [])]
        elif b["type"] == "context":
            out += [e["text"] for e in b["elements"]]
    return [*out, payload["text"]]


def _assert_inert(payload: dict) -> None:
    """No attacker markup survives: outside code spans nothing of EVIL formats, links or
    pings; inside them nothing closes the span or starts a new line."""
    header = payload["blocks"][0]["text"]["text"]
    assert "\n" not in header and "\x1b" not in header and "https://evil" not in header
    for text in _mrkdwn_texts(payload):
        assert "\x1b" not in text and "\nFORGED" not in text, text
        assert text.count("`") % 2 == 0, text  # every span that opens also closes
        for span in _SPAN.findall(text):
            assert "\n" not in span, span
        outside = _LINK_TARGET.sub("<", _SPAN.sub("", text))
        for markup in ("*bold*", "_it_", "~s~", "<!channel>", "<https://evil", "https://evil"):
            assert markup not in outside, (markup, text)


def test_attacker_strings_render_as_inert_text(tmp_path):
    evidence = {
        "features": {EVIL: 1.0}, "baseline": {EVIL: 0.5},
        "signals": [{"signal": EVIL, "score": 9.0}],
        "shared_attributes": [{"kind": EVIL, "key": EVIL, "members": 7}],
        "harvest": {EVIL: 5},
    }
    slack = SlackReceiver().start()
    try:
        h = Harness(tmp_path, slack_webhook_url=slack.base + "/services/x",
                    runbook_url="https://runbooks.example/docs/detectors.md")
        asyncio.run(h.run([
            change(EVIL, alert_id=EVIL, evidence=evidence),
            change("c" + EVIL, entity_type="cluster", detector=EVIL, alert_id="c" + EVIL,
                   members=[EVIL, "m`2", "m*3*"], evidence=evidence),
        ]))
    finally:
        slack.stop()
    assert slack.invalid == [] and len(slack.posts) == 2, slack.invalid
    for p in slack.posts:
        _assert_inert(p)
    body = str(slack.posts[1]["blocks"])
    # The values are still there for on-call to read, escaped, not dropped.
    assert "&lt;!channel&gt;" in body and "\\\\nFORGED" in body
    assert "https://runbooks.example/docs/detectors.md#x%60%2Abold" in body  # encoded target


def test_huge_id_and_10000_member_campaign_reach_slack_within_limits(tmp_path):
    huge = "acct-" + "&<" * 1000  # 2,005 characters, each `&`/`<` 4-5 once escaped
    members = [f"member-{i}-" + "x" * 150 for i in range(10_000)]
    slack = SlackReceiver(token="xoxb-t").start()
    try:
        h = Harness(tmp_path, slack_bot_token="xoxb-t", slack_channel="C1",
                    slack_api_url=slack.base + "/api")
        changes = [
            change(huge, alert_id="big-account"),
            change("campaign-" + "y" * 2000, entity_type="cluster", detector="template_cluster",
                   alert_id="big-cluster", members=members,
                   evidence={"shared_attributes": [{"kind": "asn", "key": m, "members": 9}
                                                   for m in members[:100]],
                             "signals": [{"signal": "s" * 5000, "score": 1.0}]}),
        ]
        # Many detectors on one account: one message must still stay within the limits.
        changes += [change(huge, detector=f"det_{i}_" + "z" * 100, alert_id=f"d{i}")
                    for i in range(60)]
        asyncio.run(h.run(changes))
    finally:
        slack.stop()
    assert slack.invalid == []  # the receiver validates Block Kit limits
    assert h.dlq == []
    assert len(slack.posts) == 2
    big = next(p for p in slack.posts if "Members" not in str(p["blocks"]))
    entity = big["blocks"][1]["fields"][0]["text"]
    assert entity.startswith("*Entity*\naccount `acct-&amp;&lt;") and "chars)`" in entity
    cluster = next(p for p in slack.posts if "Members" in str(p["blocks"]))
    assert "*Members*\n10,000" in str(cluster["blocks"][1]) or "10,000" in str(cluster)
    for p in slack.posts + slack.updates:
        assert validate_block_kit(p) is None
        assert len(p["text"]) <= 4000


def _first_post(tmp_path, changes, **sinks) -> dict:  # type: ignore[no-untyped-def]
    slack = SlackReceiver().start()
    try:
        h = Harness(tmp_path, slack_webhook_url=slack.base + "/services/x", **sinks)
        asyncio.run(h.run(changes))
    finally:
        slack.stop()
    assert slack.invalid == [] and slack.posts, slack.invalid
    return slack.posts[0]


def _fields(post: dict) -> dict[str, str]:
    """Section fields by their bold title: ``{"Open since (UTC)": "2001-09-09 ..."}``."""
    out = {}
    for f in post["blocks"][1]["fields"]:
        title, _, value = f["text"].partition("\n")
        out[title.strip("*")] = value
    return out


def test_campaign_harvest_is_a_running_total_since_the_campaign_opened(tmp_path):
    founded = 1_000_000.0 - 3 * 3600
    ev = {"baseline": {"founded_ts": founded, "expected_suspicious_members": 0},
          "harvest": {"requests": 52_000, "output_tokens": 41_000_000},
          "signals": [{"signal": "suspicious_members", "score": 9.0}]}
    post = _first_post(tmp_path, [change(
        "campaign-1", entity_type="cluster", detector="campaign_cluster", members=MEMBERS,
        evidence=ev, opened_ts=founded + 600)])
    text = str(post["blocks"])
    assert "in the window" not in text  # the old, wrong wording
    assert "harvested since the campaign opened* (since 1970-01-12 10:46:40 UTC)" in text
    assert "41,000,000 output tokens" in text and "52,000 requests" in text
    # Open since: the alert's own opening time, and how long it has been open at this change.
    opened = _fields(post)["Open since (UTC)"]
    assert opened.startswith("1970-01-12 10:56:40") and "(open for 2h 50m)" in opened


def test_account_alert_shows_now_vs_typical_and_org_tier_age(tmp_path):
    ev = {"features": {"requests": 160.0, "output_tokens": 64000.0,
                       "account_age_days": 2.5},
          "baseline": {"requests": 8.0, "output_tokens": 3000.0},
          "signals": [{"signal": "output_tokens", "score": 12.0},
                      {"signal": "requests", "score": 9.0}],
          "tier": "free"}
    post = _first_post(tmp_path, [change("acct-9", evidence=ev, org_id="org-acme",
                                         opened_ts=1_000_000.0 - 420)])
    text = str(post["blocks"])
    # Strongest signal first, with the current value, the typical one and the ratio.
    assert "*now vs typical*: `output_tokens` 64,000 vs 3,000 (21.3x); " in text
    assert "`requests` 160 vs 8 (20x)" in text
    fields = _fields(post)
    assert fields["Account"] == "org `org-acme`, tier `free`, age 2.5 days"
    assert fields["Open since (UTC)"].endswith("(open for 7m)")


def test_extraction_alert_compares_with_the_tier_median(tmp_path):
    ev = {"features": {"hourly_requests": 900.0, "account_age_days": None},
          "baseline": {"tier_median_hourly_requests": 30.0},
          "signals": [{"signal": "hourly_requests_vs_tier", "score": 14.0}]}
    post = _first_post(tmp_path, [change("acct-x", detector="account_extraction",
                                         evidence=ev)])
    assert "`hourly requests (tier median)` 900 vs 30 (30x)" in str(post["blocks"])
    assert "Account" not in _fields(post)  # no org, tier or age on the record: no field


def test_console_and_runbook_links_are_absolute_and_encoded(tmp_path):
    slack = SlackReceiver().start()
    try:
        h = Harness(tmp_path, slack_webhook_url=slack.base + "/services/x",
                    runbook_url="https://runbooks.example/docs/detectors.md")
        h.cfg = h.cfg.model_copy(
            update={"console": ConsoleConfig(public_url="https://dw.example/console/")})
        h.dispatcher = build_dispatcher(h.cfg, CollectorRegistry(), audit=h._audit,
                                        dlq=h._dlq)
        asyncio.run(h.run([change("a1", alert_id="al/../login?x=<1>|x")]))
    finally:
        slack.stop()
    assert slack.invalid == []
    links = str(slack.posts[0]["blocks"][-1]["elements"][0])
    assert "<https://dw.example/console/alerts/al%2F..%2Flogin%3Fx%3D%3C1%3E%7Cx|Open in the " \
           "console>" in links
    assert "<https://runbooks.example/docs/detectors.md#account_baseline|" in links


def test_runbook_url_must_be_absolute_http():
    for bad in ("docs/detectors.md", "javascript:alert(1)", "//evil/x", "ftp://x/y"):
        with pytest.raises(ValidationError):
            SinksConfig(runbook_url=bad)
    assert SinksConfig().runbook_url is None
    assert SinksConfig(runbook_url="https://r.example/d.md").runbook_url == \
        "https://r.example/d.md"

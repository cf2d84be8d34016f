"""A coordinated campaign through the real detection code (offline Monitor) and the sinks:
one Slack message for the whole campaign, and an approval request that follows its members."""

from __future__ import annotations

import asyncio
import json

from detectors.pipeline import Monitor
from tests.detectors.synth import benign, hydra, merged
from tests.sinks.helpers import Harness
from tests.sinks.receivers import SlackReceiver, WebhookReceiver


def _changes() -> list[dict]:
    mon = Monitor()
    out = []
    for ev in merged(hydra(n=200, hours=3), benign(n=300, hours=3)):
        out += mon.add(ev)
    return out + mon.flush()


def test_campaign_is_one_slack_message_and_one_approval(tmp_path):
    changes = _changes()
    clusters = [c for c in changes if c["entity_type"] == "cluster"]
    assert clusters, "the synthetic campaign was not detected"
    slack = SlackReceiver(token="xoxb-c").start()
    hook = WebhookReceiver(b"k").start()
    try:
        h = Harness(tmp_path, slack_bot_token="xoxb-c", slack_channel="C1",
                    slack_api_url=slack.base + "/api", slack_min_interval_s=0.0,
                    webhook_urls=f"{hook.base}/h", webhook_secret="k",
                    policy="approval_above_members = 50\n")
        asyncio.run(h.run(changes))
    finally:
        slack.stop()
        hook.stop()
    assert slack.invalid == []
    campaign = {c["entity_id"] for c in clusters}
    # One message per alerting entity, and here the only alerting entity is the campaign.
    assert len(slack.posts) == len({(c["entity_type"], c["entity_id"]) for c in changes})
    assert len(slack.posts) == len(campaign) == 1
    [ts] = slack.messages
    final = slack.messages[ts]
    # The message was edited to the campaign's latest state (resolution included).
    assert len(slack.updates) >= 1
    assert f"*Members*\\n{clusters[-1]['member_count']}" in str(final["blocks"])
    assert ("RESOLVED" in final["text"]) == (clusters[-1]["state"] == "resolved")
    # Key evidence of a campaign at a glance: what the members share, what they harvest.
    assert "*shared by members*: " in str(final["blocks"])
    assert "*harvested since the campaign opened*" in str(final["blocks"])
    assert len(hook.accepted) == len(changes)

    # The campaign grew past 50 members while critical: one approval request, whose member
    # list is the latest cluster's, and nothing suspended without a human.
    pending = [r for r in h.audit if r["decision"] == "pending_approval"]
    assert len(pending) == 1
    assert not [r for r in h.audit if r["action"] == "suspend" and r["decision"] == "dry_run"]
    record = json.loads((tmp_path / "data" / "approvals.json").read_text())
    [rec] = record["approvals"].values()
    last_open = [c for c in clusters if c["state"] != "resolved"][-1]
    assert sorted(rec["members"]) == sorted(last_open["members"])

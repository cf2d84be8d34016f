"""Agreement between detectors and the effective severity it gives."""

from __future__ import annotations

from streams.sinks.agreement import Agreement
from streams.sinks.policy import effective_severity
from tests.sinks.helpers import change


def test_families_count_once_and_resolution_withdraws():
    ag = Agreement(families={"rate_a": "rate", "rate_b": "rate"})
    ag.observe(change("a1", detector="rate_a"))
    ag.observe(change("a1", detector="rate_b"))
    dets = ag.for_account("a1")
    assert dets == ("rate_a", "rate_b") and ag.independent(dets) == 1
    assert effective_severity("warning", ag.independent(dets)) == "warning"
    ag.observe(change("a1", detector="fingerprint"))
    assert ag.independent(ag.for_account("a1")) == 2
    assert effective_severity("warning", 2) == "critical"
    assert effective_severity("info", 2) == "warning"
    ag.observe(change("a1", detector="fingerprint", state="resolved"))
    assert ag.for_account("a1") == ("rate_a", "rate_b")


def test_cluster_corroboration_needs_a_share_of_members():
    members = [f"m{i}" for i in range(20)]
    ag = Agreement(corroboration_share=0.1)
    ag.observe(change("c1", entity_type="cluster", detector="template", members=members))
    ag.observe(change("m0", detector="account_baseline"))
    # 1 of 20 members flagged by another detector: 5 % < 10 %, no corroboration.
    assert ag.for_cluster("c1") == ("template",)
    ag.observe(change("m1", detector="account_baseline"))
    assert ag.for_cluster("c1") == ("account_baseline", "template")
    # Another cluster alert over the same members corroborates too, once it covers enough.
    ag.observe(change("net-7", entity_type="cluster", detector="network", members=members[:2]))
    assert "network" in ag.for_cluster("c1")
    # Members updated away from the cluster are no longer counted for it.
    ag.observe(change("c1", entity_type="cluster", detector="template", state="updated",
                      members=members[5:]))
    assert ag.for_account("m0") == ("account_baseline", "network")
    assert ag.for_cluster("c1") == ("template",)

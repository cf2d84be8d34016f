"""``distillwatch alerts list|show`` on a store holding a campaign and an account alert."""

from __future__ import annotations

import csv

import pytest

from streams.cli import main
from streams.store.db import open_store
from streams.store.writer import StoreWriter, encode
from tests.store.data import T0, account, campaign


@pytest.fixture
def url(tmp_path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    w = StoreWriter(open_store(url))
    changes = campaign(n=3)
    changes[-1]["members"] = [*changes[-1]["members"][:-1], "=HYPERLINK(\"http://x\")"]
    for c in changes:
        w.add_alert(c)
    w.add_alert(account())
    w.add_alert({**account(), "state": "resolved", "ts": T0 + 600})
    w.add_action(encode({"ts": T0 + 700, "decision": "pending_approval", "action": "suspend",
                         "alert_id": changes[0]["alert_id"], "count": 30}))
    w.add_action(encode({"ts": T0 + 800, "decision": "console", "action": "approve",
                         "alert_id": changes[0]["alert_id"], "by": "alice", "note": "hydra"}))
    return url


def test_list_filters(url, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["alerts", "list", "--store-url", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[1].startswith("c0ffee") and "critical" in out[1]
    assert "2.75" in out[1] and " 30 " in out[1] and "1,200,000" in out[1]  # 11/4, members
    assert main(["alerts", "list", "--open", "--store-url", url]) == 0
    assert "ramp-1" not in capsys.readouterr().out
    assert main(["alerts", "list", "--detector", "account_baseline", "--store-url", url]) == 0
    assert "camp-1" not in capsys.readouterr().out
    assert main(["alerts", "list", "--severity", "info", "--store-url", url]) == 0
    assert capsys.readouterr().out.strip() == "no alerts match"
    # The campaign was last updated at T0 + 1200, the account alert resolved at T0 + 600.
    assert main(["alerts", "list", "--since", str(T0 + 700), "--store-url", url]) == 0
    out = capsys.readouterr().out
    assert "camp-1" in out and "ramp-1" not in out


def test_show_timeline_evidence_decisions_members(url, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out_csv = tmp_path / "members.csv"
    assert main(["alerts", "show", "c0ffee00", "--members-csv", str(out_csv),
                 "--store-url", url]) == 0
    out = capsys.readouterr().out
    assert "CRITICAL  cluster_campaign on cluster camp-1" in out
    assert out.count(" opened ") + out.count(" updated ") >= 3  # the timeline
    assert "payment fingerprint card:f00d (30 members)" in out
    assert "harvested so far: 1,200,000 output tokens in 300 requests (running total since" in out
    assert "approve by alice (" not in out and "console approve by alice: hydra" in out
    assert "pending_approval suspend (30 accounts)" in out
    assert "Members (30)" in out
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["account_id", "alert_id", "entity_id"] and len(rows) == 31
    assert rows[-1][0].startswith("'=")  # not a live formula in a spreadsheet


def test_account_evidence_says_now_vs_typical(url, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["alerts", "show", "acc0000000000000beef", "--store-url", url]) == 0
    out = capsys.readouterr().out
    assert "requests: now 400, typical 20 (20x; score 9.5)" in out
    assert "resolved" in out


@pytest.mark.parametrize("argv, msg", [
    (["alerts", "show", "nope"], "no alert 'nope'"),
    (["alerts", "show"], "needs an alert ID"),
    (["alerts", "list", "--since", "yesterday-ish"], "--since: expected"),
    (["alerts", "show", "c0ffee", "--members-csv", "/nonexistent/dir/m.csv"], "cannot write"),
])
def test_errors_are_one_line_and_exit_1(url, capsys, argv, msg) -> None:  # type: ignore[no-untyped-def]
    assert main([*argv, "--store-url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and "Traceback" not in err

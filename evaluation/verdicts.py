"""On-call verdicts as ground truth: the console's false-positive labels, scored.

On real traffic there is no simulator's labels file; what there is are the alerts people
looked at and marked false positive in the console. They land on the ``labels`` topic
(signed, one record per verdict, key = alert id):
``{"label": "false_positive", "alert_id", "entity_type", "entity_id", "detector", "by",
"note", "ts"}``. ``distillwatch evaluate --alerts A --verdicts topic`` (or a JSON-lines
file of such records) reports, per detector, how many alerts opened and how many of them
on-call marked false positive.

>>> alerts = [{"alert_id": "a", "state": "opened", "detector": "d"},
...           {"alert_id": "b", "state": "opened", "detector": "d"},
...           {"alert_id": "a", "state": "updated", "detector": "d"}]
>>> report = verdict_report(alerts, [{"label": "false_positive", "alert_id": "a"}])
>>> report["d"]
{'alerts': 2, 'false_positive': 1, 'share': 0.5}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from streams.config import Config

__all__ = ["format_verdicts", "read_verdict_topic", "verdict_report"]

log = logging.getLogger(__name__)


def read_verdict_topic(cfg: Config, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every verdict on ``topics.labels`` from the beginning to its current end; records
    without a valid signature are skipped (and counted in the log)."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.integrity import signer_for
    from streams.kafka_security import client_kwargs

    signer, topic = signer_for(cfg), cfg.topics.labels
    c = KafkaConsumer(bootstrap_servers=cfg.broker.bootstrap, enable_auto_commit=False,
                      **client_kwargs(cfg.broker))
    out: list[dict[str, Any]] = []
    bad = 0
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        if not tps:
            return out
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                for r in recs:
                    if r.value is None or not signer.verify(tp.topic, r.key, r.value,
                                                            r.headers):
                        bad += 1
                        continue
                    try:
                        rec = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        bad += 1
                        continue
                    if isinstance(rec, dict):
                        out.append(rec)
    finally:
        c.close()
    if bad:
        log.warning("evaluate: %s unsigned or unreadable record(s) on %s skipped", bad, topic)
    return out


def verdict_report(alerts: Iterable[Mapping[str, Any]],
                   verdicts: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """detector -> alerts opened, how many marked false positive, and the share."""
    fp = {v.get("alert_id") for v in verdicts if v.get("label") == "false_positive"}
    seen: dict[str, str] = {}
    for a in alerts:
        if a.get("state") == "opened" and isinstance(a.get("alert_id"), str):
            seen[a["alert_id"]] = str(a.get("detector"))
    out: dict[str, dict[str, Any]] = {}
    for aid, det in seen.items():
        row = out.setdefault(det, {"alerts": 0, "false_positive": 0, "share": 0.0})
        row["alerts"] += 1
        row["false_positive"] += aid in fp
    for row in out.values():
        row["share"] = round(row["false_positive"] / row["alerts"], 4)
    return dict(sorted(out.items()))


def format_verdicts(report: Mapping[str, Mapping[str, Any]], n_verdicts: int) -> str:
    lines = [f"On-call verdicts ({n_verdicts} false-positive labels)",
             f"{'detector':<28} {'alerts':>7} {'false pos.':>10} {'share':>7}"]
    for det, r in report.items():
        lines.append(f"{det:<28} {r['alerts']:>7} {r['false_positive']:>10} "
                     f"{r['share']:>7.1%}")
    if not report:
        lines.append("(no opened alerts)")
    return "\n".join(lines)

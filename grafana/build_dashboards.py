"""Build distillwatch's Grafana dashboards with grafana-foundation-sdk and write their JSON.

    python grafana/build_dashboards.py          # rewrite grafana/dashboards/*.json
    python grafana/build_dashboards.py --check  # exit 1 if the JSON is out of date

The JSON files are what Grafana loads (grafana/provisioning/dashboards/distillwatch.yml);
this script is where they are edited. tests/observability/test_dashboards.py fails when the
two drift apart, and runs every query of every panel against a real Prometheus
(tests/observability/test_prometheus_live.py).

Conventions: every query filters on ``instance=~"$instance"``; rates use
``$__rate_interval``; ranked metrics (``distillwatch_top_entity_*``) are aggregated with
``max by (rank)`` because only the worker that owns the findings partition ranks (the others
export no ranks), and an entity never appears under its id (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphGradientMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
)

OUT = Path(__file__).resolve().parent / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job="distillwatch", instance=~"$instance"'
RATE = "$__rate_interval"
TOP_K = 10

# Severity is drawn in the same fixed colours everywhere (never the palette's first colour,
# which is green): the numeric metric distillwatch_top_entity_severity (0, 1, 2) and the
# `severity` label value map to the same text and colour.
SEVERITIES = (("info", "blue"), ("warning", "orange"), ("critical", "red"))
# Where people open the console (console.public_url). The dashboards read it from the
# `console_url` variable (a text box; `?var-console_url=` in a link works too), whose default
# is this constant: set it to your deployment's URL and regenerate (grafana/README.md).
CONSOLE_URL = "http://127.0.0.1:8088"

# ---------------------------------------------------------------------------------- helpers


def q(expr: str, legend: str = "__auto", *, instant: bool = False, ref: str = "A") -> Any:
    d = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    if instant:
        d = d.instant().format("table")
    return d


def severity_mappings(*, numeric: bool) -> list[Any]:
    """Value mappings: severity as its word in its colour, from the number (0, 1, 2) or from
    the label text."""
    return [ValueMap(options={
        (str(i) if numeric else name): ValueMappingResult(text=name, color=color, index=i)
        for i, (name, color) in enumerate(SEVERITIES)
    })]


def severity_thresholds() -> Any:
    """Steps for the numeric severity: below 1 info (blue), 1 warning, 2 critical."""
    return (
        gd.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=None if i == 0 else float(i), color=color)
                for i, (_, color) in enumerate(SEVERITIES)])
    )


def by_severity(p: Any) -> Any:
    """A panel with one series per `severity` label: each series in its fixed colour."""
    for name, color in SEVERITIES:
        p = p.override_by_name(name, [DynamicConfigValue(
            id_val="color", value={"mode": "fixed", "fixedColor": color})])
    return p


def severity_panel(p: Any) -> Any:
    """A stat or time series of the numeric severity: words and fixed colours, not 0..2."""
    p = p.mappings(severity_mappings(numeric=True)).thresholds(severity_thresholds())
    p = p.color_scheme(gd.FieldColor().mode("thresholds"))
    if isinstance(p, stat.Panel):
        return p.color_mode("background")
    # The line takes each point's threshold colour (without "scheme" it is one colour).
    return p.gradient_mode(GraphGradientMode.SCHEME)


def console_alert_link() -> Any:
    """Data link of an alert id cell: the console's page of that alert."""
    return (
        gd.DashboardLink("Open the alert in the console")
        .url("${console_url}/alerts/${__value.raw}")
        .target_blank(True)
    )


def ts(title: str, desc: str, unit: str, *queries: Any, w: int = 12, h: int = 8) -> Any:
    p = (
        timeseries.Panel()
        .title(title)
        .description(desc)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .min(0)
    )
    for i, t in enumerate(queries):
        p = p.with_target(t.ref_id(chr(ord("A") + i)))
    return p


def st(title: str, desc: str, unit: str, query: Any, *, w: int = 4, h: int = 4,
       red_at: float | None = None) -> Any:
    p = (
        stat.Panel()
        .title(title)
        .description(desc)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .with_target(query)
    )
    if red_at is not None:
        p = p.thresholds(
            gd.ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="green"), Threshold(value=red_at, color="red")])
        ).color_mode("background")
    return p


def ranking_table(entity_type: str, title: str, desc: str, *, w: int = 24, h: int = 9) -> Any:
    """One row per rank: alert id, detector, severity, members, harvest, ratio, open for."""
    f = f'{{{SEL}, entity_type="{entity_type}"}}'
    queries = [
        q(f"max by (rank, alert_id, detector, severity) (distillwatch_top_entity_info{f})",
          instant=True),
        q(f"max by (rank) (distillwatch_top_entity_score_ratio{f})", instant=True),
        q(f"max by (rank) (distillwatch_top_entity_members{f})", instant=True),
        q(f"max by (rank) (distillwatch_top_entity_output_tokens{f})", instant=True),
        q(f"time() - max by (rank) (distillwatch_top_entity_first_flagged_timestamp_seconds{f})",
          instant=True),
    ]
    p = table.Panel().title(title).description(desc).datasource(DS).span(w).height(h)
    for i, t in enumerate(queries):
        p = p.with_target(t.ref_id(chr(ord("A") + i)))
    p = p.with_transformation(DataTransformerConfig(id_val="merge", options={}))
    p = p.with_transformation(
        DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True, "Value #A": True},
                "renameByName": {
                    "rank": "Rank",
                    "alert_id": "Alert id (Slack / alerts topic)",
                    "detector": "Detector",
                    "severity": "Severity",
                    "Value #B": "Score / threshold",
                    "Value #C": "Members",
                    "Value #D": "Output tokens harvested",
                    "Value #E": "Flagged for (s)",
                },
            },
        )
    )
    p = p.with_transformation(
        DataTransformerConfig(
            id_val="convertFieldType",
            options={"conversions": [{"targetField": "rank", "destinationType": "number"}]},
        )
    )
    # Severity in its word and colour; the alert id opens the alert's console page.
    p = p.override_by_name("Severity", [
        DynamicConfigValue(id_val="mappings", value=severity_mappings(numeric=False)),
        DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
    ])
    p = p.override_by_name("Alert id (Slack / alerts topic)", [
        DynamicConfigValue(id_val="links", value=[console_alert_link().build()]),
    ])
    return p.sort_by([common.TableSortByFieldState().display_name("Rank").desc(False)])


def base(uid: str, title: str, desc: str, tags: list[str]) -> Any:
    return (
        gd.Dashboard(title)
        .uid(uid)
        .description(desc)
        .tags(["distillwatch", *tags])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(
            gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_variable(
            gd.TextBoxVariable("console_url")
            .label("Console URL")
            .description("console.public_url: where alert ids and the Console link lead")
            .default_value(CONSOLE_URL)
            .current(VariableOption(text=CONSOLE_URL, value=CONSOLE_URL, selected=True))
        )
        # Every distillwatch dashboard, same time range and variables; and the console.
        .link(
            gd.DashboardLink("distillwatch")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(["distillwatch"])
            .as_dropdown(False)
            .keep_time(True)
            .include_vars(True)
        )
        .link(
            gd.DashboardLink("Console")
            .type(DashboardLinkType.LINK)
            .url("${console_url}/")
            .icon("external link")
            .tooltip("The alert queue of the web console (distillwatch console)")
            .target_blank(True)
        )
        # Alert opens as annotations on every time series, one colour per severity.
        .annotations([alert_opens(name, color) for name, color in reversed(SEVERITIES)])
        .with_variable(
            gd.QueryVariable("instance")
            .label("Worker")
            .datasource(DS)
            .query('label_values(up{job="distillwatch"}, instance)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(text="All", value="$__all", selected=True))
        )
    )


def alert_opens(severity: str, color: str) -> Any:
    """Annotation: the times alerts of ``severity`` opened (from the alerts counter)."""
    return (
        gd.AnnotationQuery()
        .name(f"Alert opens: {severity}")
        .datasource(DS)
        .enable(severity != "info")
        .icon_color(color)
        .expr(f'sum by (detector) (increase(distillwatch_alerts_total{{{SEL}, '
              f'state="opened", severity="{severity}"}}[1m])) > 0')
    )


# What the SDK's AnnotationQuery has no setter for: Prometheus annotation options.
ANNOTATION_EXTRAS = {
    "step": "1m",
    "titleFormat": "{{detector}}",
    "textFormat": "alert opened; the alert id is in the console queue and in Slack",
    "useValueForTime": False,
}


def rank_variable() -> Any:
    return (
        gd.CustomVariable("rank")
        .label("Rank")
        .values(",".join(str(i) for i in range(1, TOP_K + 1)))
        .current(VariableOption(text="1", value="1", selected=True))
    )


# ------------------------------------------------------------------------------- dashboards


def overview() -> Any:
    cl = f'{{{SEL}, entity_type="cluster"}}'
    return (
        base(
            "distillwatch-overview",
            "distillwatch / On-call overview",
            "Is a campaign running, how big, since when, and is the pipeline healthy?",
            ["oncall"],
        )
        .with_row(gd.Row("Detection"))
        .with_panel(st(
            "Open alerts: critical",
            "Alerts open now with severity critical (accounts and clusters).",
            "none",
            q(f'sum(distillwatch_alerts_open{{{SEL}, severity="critical"}})', instant=True),
            red_at=1,
        ))
        .with_panel(st(
            "Open alerts: warning",
            "Alerts open now with severity warning.",
            "none",
            q(f'sum(distillwatch_alerts_open{{{SEL}, severity="warning"}})', instant=True),
        ))
        .with_panel(st(
            "Active campaigns",
            "Clusters (campaigns) with an open alert.",
            "none",
            q(f"sum(distillwatch_flagged_entities{cl})", instant=True),
            red_at=1,
        ))
        .with_panel(st(
            "Campaign accounts",
            "Member accounts summed over the open campaigns.",
            "none",
            q(f"sum(distillwatch_flagged_members{cl})", instant=True),
        ))
        .with_panel(st(
            "Harvest so far",
            "Output tokens the open campaigns have received since they were founded.",
            "short",
            q(f"sum(distillwatch_flagged_output_tokens{cl})", instant=True),
        ))
        .with_panel(st(
            "Oldest campaign flagged for",
            "Time since the first flagged window of the longest-running open campaign.",
            "s",
            q("time() - min(distillwatch_top_entity_first_flagged_timestamp_seconds"
              f"{cl})", instant=True),
        ))
        .with_panel(ranking_table(
            "cluster",
            "Worst open campaigns",
            "Ranked by severity, then score over threshold. Look the alert id up in Slack or "
            "on the alerts topic for the members and evidence.",
            h=7,
        ))
        .with_panel(by_severity(ts(
            "Open alerts by severity",
            "Alerts open now, all detectors.",
            "none",
            q(f"sum by (severity) (distillwatch_alerts_open{{{SEL}}})", "{{severity}}"),
        )))
        .with_panel(ts(
            "Alerts opened by detector",
            "New alerts per second (opened state changes).",
            "ops",
            q(f'sum by (detector, severity) (rate(distillwatch_alerts_total{{{SEL}, '
              f'state="opened"}}[{RATE}]))', "{{detector}} {{severity}}"),
        ))
        .with_panel(ts(
            "Detection latency",
            "Wall-clock time from a window's event-time end to its findings.",
            "s",
            q("histogram_quantile(0.5, sum by (le) (rate("
              f"distillwatch_finding_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "p50"),
            q("histogram_quantile(0.95, sum by (le) (rate("
              f"distillwatch_finding_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "p95"),
            w=8,
        ))
        .with_panel(ts(
            "Campaign size and harvest",
            "Members (left) and output tokens harvested (right) of the open campaigns.",
            "short",
            q(f"sum(distillwatch_flagged_members{cl})", "members"),
            q(f"sum(distillwatch_flagged_output_tokens{cl})", "output tokens"),
            w=8,
        ).override_by_name(
            "output tokens", [DynamicConfigValue(id_val="custom.axisPlacement", value="right")]
        ))
        .with_panel(ts(
            "Findings by detector",
            "Findings per second; a finding is one entity-window over its threshold.",
            "ops",
            q(f"sum by (detector) (rate(distillwatch_findings_total{{{SEL}}}[{RATE}]))",
              "{{detector}}"),
            w=8,
        ))
        .with_row(gd.Row("Pipeline"))
        .with_panel(st(
            "Workers up",
            "Workers Prometheus can scrape.",
            "none",
            q('sum(up{job="distillwatch", instance=~"$instance"})', instant=True),
        ))
        .with_panel(st(
            "Events / s",
            "Messages consumed from the requests topic.",
            "ops",
            q(f"sum(rate(distillwatch_events_consumed_total{{{SEL}}}[{RATE}]))", instant=True),
        ))
        .with_panel(st(
            "Consumer lag",
            "Messages behind the end of the requests topic, all partitions.",
            "short",
            q(f"sum(distillwatch_consumer_lag_messages{{{SEL}}})", instant=True),
            red_at=10000,
        ))
        .with_panel(st(
            "DLQ share",
            "Share of consumed messages rejected to requests-dlq.",
            "percentunit",
            q(f"sum(rate(distillwatch_events_invalid_total{{{SEL}}}[{RATE}])) / "
              f"sum(rate(distillwatch_events_consumed_total{{{SEL}}}[{RATE}]))", instant=True),
            red_at=0.05,
        ))
        .with_panel(st(
            "Sink failures / s",
            "Alert deliveries given up on, all sinks.",
            "ops",
            q(f"sum(rate(distillwatch_sink_failed_total{{{SEL}}}[{RATE}]))", instant=True),
            red_at=0.001,
        ))
        .with_panel(st(
            "Action budget",
            "1 while the suspension hook's action budget is exhausted (circuit open).",
            "none",
            q(f"max(distillwatch_sink_breaker_open{{{SEL}}})", instant=True),
            red_at=1,
        ))
        .with_panel(ts(
            "Events / s",
            "Consumed, valid and rejected (DLQ) messages per second.",
            "ops",
            q(f"sum(rate(distillwatch_events_consumed_total{{{SEL}}}[{RATE}]))", "consumed"),
            q(f"sum(rate(distillwatch_events_valid_total{{{SEL}}}[{RATE}]))", "valid"),
            q(f"sum(rate(distillwatch_events_invalid_total{{{SEL}}}[{RATE}]))", "DLQ"),
            w=8,
        ))
        .with_panel(ts(
            "Consumer lag by worker",
            "Messages behind the end of the requests topic. Growing = falling behind.",
            "short",
            q(f"sum by (instance) (distillwatch_consumer_lag_messages{{{SEL}}})",
              "{{instance}}"),
            w=8,
        ))
        .with_panel(ts(
            "Sink deliveries",
            "Sent, retried and failed alert deliveries per second, by sink.",
            "ops",
            q(f"sum by (sink) (rate(distillwatch_sink_sent_total{{{SEL}}}[{RATE}]))",
              "sent {{sink}}"),
            q(f"sum by (sink) (rate(distillwatch_sink_retried_total{{{SEL}}}[{RATE}]))",
              "retried {{sink}}"),
            q(f"sum by (sink) (rate(distillwatch_sink_failed_total{{{SEL}}}[{RATE}]))",
              "failed {{sink}}"),
            w=8,
        ))
    )


def entity_dashboard(entity_type: str) -> Any:
    """The campaign (cluster) or account drill-down: ranking, then one rank in detail."""
    is_cluster = entity_type == "cluster"
    noun = "campaign" if is_cluster else "account"
    f = f'{{{SEL}, entity_type="{entity_type}"}}'
    fr = f'{{{SEL}, entity_type="{entity_type}", rank="$rank"}}'
    det = 'detector=~"cluster_.*"' if is_cluster else 'detector=~"account_.*"'
    d = (
        base(
            f"distillwatch-{noun}s",
            f"distillwatch / {noun.capitalize()}s",
            f"Drill-down into the worst open {noun}s. Entities are ranked, never named: the "
            "alert id joins to the Slack alert and the alerts topic (docs/metrics.md).",
            [noun],
        )
        .with_variable(rank_variable())
        .with_row(gd.Row(f"Worst open {noun}s"))
        .with_panel(ranking_table(
            entity_type,
            f"Worst open {noun}s (top {TOP_K})",
            "Ranked by severity, then score over threshold.",
        ))
        .with_panel(by_severity(ts(
            f"Open {noun}s by severity",
            f"{noun.capitalize()}s with an open alert.",
            "none",
            q(f"sum by (severity) (distillwatch_flagged_entities{f})", "{{severity}}"),
            w=8,
        )))
        .with_panel(ts(
            "Score / threshold by rank",
            "How far over its threshold each rank is. Ranks re-sort at every scrape.",
            "none",
            q(f"max by (rank) (distillwatch_top_entity_score_ratio{f})", "rank {{rank}}"),
            w=8,
        ))
        .with_panel(ts(
            f"{noun.capitalize()} findings and alerts",
            f"Findings and alert state changes per second from the {noun} detectors.",
            "ops",
            q(f"sum by (detector) (rate(distillwatch_findings_total{{{SEL}, {det}}}[{RATE}]))",
              "findings {{detector}}"),
            q(f"sum by (state) (rate(distillwatch_alerts_total{{{SEL}, {det}}}[{RATE}]))",
              "alerts {{state}}"),
            w=8,
        ))
        .with_row(gd.Row("Rank $rank in detail"))
        .with_panel(st(
            "Alert",
            "Alert id, detector and severity of this rank now: search Slack for the id.",
            "none",
            q(f"max by (alert_id, detector, severity) (distillwatch_top_entity_info{fr})",
              "{{alert_id}} {{detector}} {{severity}}", instant=True),
            w=8,
        ).text_mode("name"))
        .with_panel(st(
            "Flagged for",
            "Time since the first flagged window of this rank's alert.",
            "s",
            q(f"time() - max(distillwatch_top_entity_first_flagged_timestamp_seconds{fr})",
              instant=True),
        ))
        .with_panel(st(
            "Members", "Member accounts now.", "none",
            q(f"max(distillwatch_top_entity_members{fr})", instant=True),
        ) if is_cluster else severity_panel(st(
            "Severity", "This rank's severity now.", "none",
            q(f"max(distillwatch_top_entity_severity{fr})", instant=True),
        )))
        .with_panel(st(
            "Output tokens harvested",
            "Output tokens in the flagged windows (clusters: since the campaign was founded).",
            "short",
            q(f"max(distillwatch_top_entity_output_tokens{fr})", instant=True),
            w=8,
        ))
        .with_panel(ts(
            "Score / threshold",
            "This rank's score over threshold over time (the entity at a rank can change).",
            "none",
            q(f"max(distillwatch_top_entity_score_ratio{fr})", "rank $rank"),
            w=8,
        ))
        .with_panel(ts(
            "Members", "Member accounts over time.", "none",
            q(f"max(distillwatch_top_entity_members{fr})", "rank $rank"), w=8,
        ) if is_cluster else severity_panel(ts(
            "Severity", "This rank's severity over time (axis: 0 info, 1 warning, 2 critical).",
            "none", q(f"max(distillwatch_top_entity_severity{fr})", "rank $rank"), w=8,
        )))
        .with_panel(ts(
            "Harvest",
            "Output tokens harvested by this rank, and by all open " + noun + "s.",
            "short",
            q(f"max(distillwatch_top_entity_output_tokens{fr})", "rank $rank"),
            q(f"sum(distillwatch_flagged_output_tokens{f})", f"all open {noun}s"),
            w=8,
        ))
    )
    if not is_cluster:
        d = d.with_panel(ts(
            "Accounts with state",
            "Accounts the workers keep detector state for (memory scales with this).",
            "short",
            q(f"sum by (instance) (distillwatch_active_accounts{{{SEL}}})", "{{instance}}"),
            w=24,
        ))
    return d


def pipeline() -> Any:
    return (
        base(
            "distillwatch-pipeline",
            "distillwatch / Pipeline health",
            "Kafka in, windows, detection, Faust internals and alert sinks.",
            ["pipeline"],
        )
        .with_row(gd.Row("Input"))
        .with_panel(ts(
            "Events by outcome",
            "Consumed messages split into valid, late (after their window closed), "
            "duplicate (redelivered event_id) and rejected.",
            "ops",
            q(f"sum(rate(distillwatch_events_valid_total{{{SEL}}}[{RATE}]))", "valid"),
            q(f"sum(rate(distillwatch_events_late_total{{{SEL}}}[{RATE}]))", "late"),
            q(f"sum(rate(distillwatch_events_duplicate_total{{{SEL}}}[{RATE}]))", "duplicate"),
            q(f"sum(rate(distillwatch_events_invalid_total{{{SEL}}}[{RATE}]))", "rejected"),
            w=8,
        ))
        .with_panel(ts(
            "DLQ by reason",
            "Messages rejected to requests-dlq per second, by validation reason.",
            "ops",
            q(f"sum by (reason) (rate(distillwatch_events_invalid_total{{{SEL}}}[{RATE}]))",
              "{{reason}}"),
            w=8,
        ))
        .with_panel(ts(
            "Consumer lag by partition",
            "Messages behind the end of each requests partition.",
            "short",
            q(f"sum by (partition) (distillwatch_consumer_lag_messages{{{SEL}}})",
              "partition {{partition}}"),
            w=8,
        ))
        .with_row(gd.Row("Windows and detection"))
        .with_panel(ts(
            "Watermark delay",
            "Wall clock minus the event-time watermark: how far behind real time windows close.",
            "s",
            q(f"time() - max by (instance) (distillwatch_watermark_timestamp_seconds{{{SEL}}})",
              "{{instance}}"),
            w=8,
        ))
        .with_panel(ts(
            "Windows closed",
            "Event-time window buckets closed and scored per second.",
            "ops",
            q(f"sum by (instance) (rate(distillwatch_windows_closed_total{{{SEL}}}[{RATE}]))",
              "{{instance}}"),
            w=8,
        ))
        .with_panel(ts(
            "Detection latency p95 by worker",
            "Wall-clock time from a window's event-time end to its findings.",
            "s",
            q("histogram_quantile(0.95, sum by (le, instance) (rate("
              f"distillwatch_finding_latency_seconds_bucket{{{SEL}}}[{RATE}])))",
              "{{instance}}"),
            w=8,
        ))
        .with_row(gd.Row("Faust"))
        .with_panel(ts(
            "Commit latency",
            "Offset commit time, p50 and p99.",
            "s",
            q("histogram_quantile(0.5, sum by (le) (rate("
              f"distillwatch_faust_commit_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "p50"),
            q("histogram_quantile(0.99, sum by (le) (rate("
              f"distillwatch_faust_commit_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "p99"),
            w=8,
        ))
        .with_panel(ts(
            "Rebalances",
            "Consumer group rebalances started; each pauses processing.",
            "short",
            q(f"sum by (instance) (increase(distillwatch_faust_rebalances_total{{{SEL}}}"
              f"[{RATE}]))", "{{instance}}"),
            w=8,
        ))
        .with_panel(ts(
            "Faust lag by topic",
            "End offset minus committed offset, every topic Faust commits.",
            "short",
            q(f"sum by (topic) (distillwatch_faust_end_offset{{{SEL}}} - on (instance, topic, "
              f"partition) distillwatch_faust_committed_offset{{{SEL}}})", "{{topic}}"),
            w=8,
        ))
        .with_panel(ts(
            "Messages sent by topic",
            "Messages handed to the Faust producer per second.",
            "ops",
            q(f"sum by (topic) (rate(distillwatch_faust_messages_sent_total{{{SEL}}}[{RATE}]))",
              "{{topic}}"),
            w=8,
        ))
        .with_panel(ts(
            "Send latency and errors",
            "Producer acknowledgement time p99 and failed sends per second.",
            "s",
            q("histogram_quantile(0.99, sum by (le) (rate("
              f"distillwatch_faust_send_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "p99"),
            q(f"sum(rate(distillwatch_faust_send_errors_total{{{SEL}}}[{RATE}]))", "errors/s"),
            w=8,
        ))
        .with_panel(ts(
            "Rebalance duration",
            "Time from rebalance start to processing again, p95.",
            "s",
            q("histogram_quantile(0.95, sum by (le) (rate("
              f"distillwatch_faust_rebalance_seconds_bucket{{{SEL}}}[{RATE}])))", "p95"),
            w=8,
        ))
        .with_row(gd.Row("Alert sinks and actions"))
        .with_panel(ts(
            "Sink queue",
            "Deliveries waiting in each sink's bounded queue.",
            "short",
            q(f"sum by (sink) (distillwatch_sink_queued{{{SEL}}})", "{{sink}}"),
            w=8,
        ))
        .with_panel(ts(
            "Dead-lettered alerts",
            "Alert deliveries written to alerts-dlq per second, by sink and reason.",
            "ops",
            q("sum by (sink, reason) (rate(distillwatch_sink_dead_lettered_total"
              f"{{{SEL}}}[{RATE}]))", "{{sink}} {{reason}}"),
            w=8,
        ))
        .with_panel(ts(
            "Suspension decisions",
            "Suspension-hook decisions per second, and the action budget breaker (1 = open).",
            "short",
            q(f"sum by (decision) (rate(distillwatch_sink_actions_total{{{SEL}}}[{RATE}]))",
              "{{decision}}"),
            q(f"max(distillwatch_sink_breaker_open{{{SEL}}})", "budget exhausted"),
            w=8,
        ))
    )


DASHBOARDS: dict[str, Callable[[], Any]] = {
    "overview": overview,
    "campaigns": lambda: entity_dashboard("cluster"),
    "accounts": lambda: entity_dashboard("account"),
    "pipeline": pipeline,
}


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    out = {}
    for name, build in DASHBOARDS.items():
        model = build().build()
        text = JSONEncoder(sort_keys=True, indent=2).encode(model)
        doc = json.loads(text)
        for a in doc.get("annotations", {}).get("list", []):
            if "expr" in a:
                a.update(ANNOTATION_EXTRAS)
        # Round-trip through json for a stable, plain layout.
        out[f"{name}.json"] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the JSON files are stale")
    args = ap.parse_args(argv)
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python grafana/build_dashboards.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

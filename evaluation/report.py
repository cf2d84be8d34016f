"""The evaluate table: distillwatch and the rate-limit baseline side by side."""

from __future__ import annotations

from evaluation.score import Labels, Score

__all__ = ["format_report"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _delay(v: float | None) -> str:
    if v is None:
        return "not detected"
    if abs(v) < 3600:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def format_report(labels: Labels, ours: Score, baseline: Score | None = None) -> str:
    cols = [ours] + ([baseline] if baseline is not None else [])
    w0, w = 34, 22
    lines = [
        f"scenario {labels.name}: {labels.days:.2f} days, {labels.benign_accounts:,} benign "
        f"and {labels.campaign_accounts:,} campaign accounts",
        "",
        f"{'':<{w0}}" + "".join(f"{c.name:>{w}}" for c in cols),
    ]

    def row(name: str, values: list[str]) -> None:
        lines.append(f"{name:<{w0}}" + "".join(f"{v:>{w}}" for v in values))

    row("precision (accounts)", [_num(c.precision) for c in cols])
    row("recall (accounts)", [_num(c.recall) for c in cols])
    row("benign accounts flagged", [f"{c.flagged_benign:,}" for c in cols])
    row("alerts (warning+)", [f"{c.alerts:,}" for c in cols])
    row("false alerts", [f"{c.false_alerts:,}" for c in cols])
    row("false alerts / 1k benign / day", [f"{c.false_alerts_per_1k_day:.2f}" for c in cols])
    row("critical false alerts", [f"{c.critical_false_alerts:,}" for c in cols])
    for i, camp in enumerate(ours.campaigns):
        lines.append("")
        lines.append(f"campaign {camp.campaign_id} ({camp.kind}, {camp.accounts:,} accounts)")
        per = [c.campaigns[i] for c in cols]
        row("  detected", ["yes" if p.detected else "no" for p in per])
        row("  delay to first warning+", [_delay(p.delay_s) for p in per])
        row("  accounts flagged", [f"{_pct(p.share_flagged)} ({p.flagged:,})" for p in per])
    if ours.detectors:
        lines += ["", "per detector (distillwatch)"]
        lines.append(f"  {'detector':<28}{'alerts':>8}{'false':>8}{'critical false':>16}"
                     f"{'campaign accts':>16}{'benign accts':>14}{'precision':>11}")
        for d in ours.detectors:
            lines.append(f"  {d.detector:<28}{d.alerts:>8,}{d.false_alerts:>8,}"
                         f"{d.critical_false:>16,}{d.campaign_accounts:>16,}"
                         f"{d.benign_accounts:>14,}{_num(d.precision):>11}")
    lines += ["", "per population (distillwatch)"]
    lines.append(f"  {'population':<30}{'accounts':>10}{'flagged':>10}{'share':>9}"
                 f"{'critical alerts':>17}")
    for p in ours.populations:
        share = p.flagged / p.accounts if p.accounts else 0.0
        lines.append(f"  {p.population:<30}{p.accounts:>10,}{p.flagged:>10,}{_pct(share):>9}"
                     f"{p.critical_alerts:>17,}")
    return "\n".join(lines)

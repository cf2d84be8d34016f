"""The detection path shared by the streaming worker and offline ``replay``:
events → windows → features → detectors → findings (→ alerts, for replay).

The worker calls :meth:`Detection.add` per event and :meth:`Detection.advance` on the
watermark or a timer, and sends the findings to the alert agent, which owns an
:class:`~detectors.alerts.AlertBook`. :class:`Monitor` chains both for offline use, so the two
paths run the same code.

Examples
--------
>>> from detectors.events import Event
>>> mon = Monitor(window_s=60, lateness_s=0, account_grace=3)
>>> changes = []
>>> for minute in range(10):
...     n = 5 if minute < 8 else 200          # the account ramps 40x
...     for i in range(n):
...         changes += mon.add(Event("acct-1", minute * 60 + i * 0.1, "m", 50, 500))
>>> changes += mon.flush()
>>> [(c["state"], c["entity_id"], c["detector"]) for c in changes][:1]
[('opened', 'acct-1', 'account_baseline')]
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable
from typing import Any

from detectors.alerts import AlertBook
from detectors.baseline import AccountBaseline
from detectors.clusters import ClusterDetector
from detectors.events import Event
from detectors.features import window_features
from detectors.findings import Finding
from detectors.fingerprint import fingerprint_int
from detectors.keys import cluster_keys
from detectors.population import PopulationModel
from detectors.templates import TemplateIndex
from detectors.windows import AccountWindow, ClosedWindow, Windower

__all__ = ["Detection", "Monitor"]

_DAY = 86400.0


class Detection:
    """Windows, features and detectors for every account and cluster.

    Parameters
    ----------
    window_s, lateness_s
        Event-time window length and allowed lateness (see :class:`~detectors.windows.Windower`).
    account_grace
        Active windows an account's own baseline learns before it can fire without a prior.
    account_threshold
        Robust z (requests or output tokens over the account's baseline) that fires.
    account_critical_z
        Robust z above which an extraction-like young account's finding is critical.
    account_persist
        Consecutive anomalous windows before an account finding: benign users burst for a
        minute, abuse keeps going.
    young_days
        Accounts younger than this count as young (cluster evidence, severity).
    suspicious
        Extraction-likeness (0..1) from which an account is a suspicious cluster member.
    cluster_windows, cluster_min_members, cluster_min_share, cluster_min_z,
    cluster_critical_members, cluster_critical_young_share, cluster_hold_windows
        See :class:`~detectors.clusters.ClusterDetector`.
    template_min_accounts, template_max_bits
        See :class:`~detectors.templates.TemplateIndex`.
    population_min_accounts
        Accounts of a tier, active in one window and with a baseline, needed to measure the
        tier's lift (the median rise of its accounts, e.g. on a launch day).
    max_members
        Cap on the member list of cluster findings.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        lateness_s: float = 10.0,
        account_grace: int = 5,
        account_threshold: float = 6.0,
        account_critical_z: float = 12.0,
        account_persist: int = 2,
        young_days: float = 30.0,
        suspicious: float = 0.5,
        cluster_windows: int = 10,
        cluster_min_members: int = 8,
        cluster_min_share: float = 0.5,
        cluster_min_z: float = 4.0,
        cluster_critical_members: int = 20,
        cluster_critical_young_share: float = 0.5,
        cluster_hold_windows: int = 9,
        template_min_accounts: int = 4,
        template_max_bits: int = 10,
        population_min_accounts: int = 30,
        max_members: int = 10_000,
    ) -> None:
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.account_grace = account_grace
        self.account_threshold = account_threshold
        self.account_critical_z = account_critical_z
        self.account_persist = account_persist
        self.young_days = young_days
        self.suspicious = suspicious
        self.population_min_accounts = population_min_accounts
        self.windower = Windower(window_s, lateness_s)
        self._baselines: dict[str, AccountBaseline] = {}
        self._touched: set[str] = set()
        self._populations: dict[str, PopulationModel] = {}
        self.templates = TemplateIndex(template_min_accounts, template_max_bits)
        self.clusters = ClusterDetector(
            window_s=window_s,
            cluster_windows=cluster_windows,
            min_members=cluster_min_members,
            min_share=cluster_min_share,
            min_z=cluster_min_z,
            suspicious=suspicious,
            critical_members=cluster_critical_members,
            critical_young_share=cluster_critical_young_share,
            hold_windows=cluster_hold_windows,
            max_members=max_members,
        )
        self.windows_closed = 0

    @property
    def active_accounts(self) -> int:
        return len(self._baselines)

    # -- durable per-account state: the worker saves it per closed window --------------------

    def pop_touched(self) -> set[str]:
        """Accounts whose state may have changed in the windows closed since the last call."""
        out, self._touched = self._touched, set()
        return out

    def export_account(self, account_id: str) -> bytes | None:
        """The account's learned state as bytes (``None`` if it has none)."""
        base = self._baselines.get(account_id)
        return None if base is None else pickle.dumps(base, protocol=pickle.HIGHEST_PROTOCOL)

    def import_account(self, account_id: str, blob: bytes) -> None:
        """Restore what :meth:`export_account` saved (after a restart or a rebalance)."""
        # Only our own changelog topic feeds this; it is as trusted as the worker.
        self._baselines[account_id] = pickle.loads(blob)

    def drop_accounts(self, account_ids: Iterable[str]) -> None:
        """Forget accounts another worker now owns: their state and open-window counters."""
        ids = set(account_ids)
        for account_id in ids:
            self._baselines.pop(account_id, None)
        self.windower.drop(ids)

    def add(self, ev: Event) -> bool:
        """Count one event; False when it was late or a duplicate."""
        return self.windower.add(ev)

    def advance(self, watermark: float) -> list[Finding]:
        """Close every window the watermark allows and return their findings."""
        out: list[Finding] = []
        for closed in self.windower.close_until(watermark):
            self.windows_closed += 1
            self._touched.update(closed.accounts)
            out.extend(self._detect(closed))
        return out

    # -- per closed window ---------------------------------------------------------------------

    def _population(self, tier: str) -> PopulationModel:
        pop = self._populations.get(tier)
        if pop is None:
            pop = self._populations[tier] = PopulationModel()
        return pop

    def _baseline(self, account_id: str, tier: str) -> AccountBaseline:
        base = self._baselines.get(account_id)
        if base is None:
            pop = self._population(tier)
            prior = None
            req, out = pop.prior("log_requests"), pop.prior("log_output_tokens")
            if req is not None and out is not None:
                prior = {"requests": req, "output_tokens": out}
            base = self._baselines[account_id] = AccountBaseline(
                grace_period=self.account_grace, threshold=self.account_threshold, prior=prior
            )
        return base

    def _lifts(
        self, rows: list[tuple[str, AccountWindow, AccountBaseline, str]]
    ) -> dict[str, float]:
        """Per tier: the median log-rise of its active accounts over their baselines."""
        rises: dict[str, list[float]] = {}
        for _, acc, base, tier in rows:
            if base.seen() >= self.account_grace:
                rises.setdefault(tier, []).append(
                    math.log1p(acc.requests) - base.expected_log("requests")
                )
        lifts = {}
        for tier, xs in rises.items():
            if len(xs) >= self.population_min_accounts:
                xs.sort()
                lifts[tier] = max(0.0, xs[len(xs) // 2])
        return lifts

    def _detect(self, closed: ClosedWindow) -> list[Finding]:
        out: list[Finding] = []
        rows = []
        for account_id, acc in closed.accounts.items():
            ev = acc.last_event
            tier = (ev.tier if ev is not None else None) or "-"
            rows.append((account_id, acc, self._baseline(account_id, tier), tier))
        lifts = self._lifts(rows) if len(rows) >= self.population_min_accounts else {}
        clusters = self.clusters
        templates = self.templates
        end = closed.end
        young_cut = self.young_days
        for account_id, acc, base, tier in rows:
            ev = acc.last_event
            assert ev is not None
            x = {"requests": float(acc.requests), "output_tokens": float(acc.output_tokens)}
            lift = lifts.get(tier, 0.0)
            scores = base.signal_scores(x, lift)
            score = max(scores.values())
            n = acc.requests
            base.observe(
                acc.first_ts,
                acc.last_ts,
                n,
                acc.output_tokens,
                1.0 - acc.multi_turn / n,
                acc.max_tokens_stops / n,
                ev.account_created_ts,
            )
            extraction = base.extraction_likeness(end, young_cut)
            age = base.age_days(end)
            young = age == age and age < young_cut
            streak = base.streak(score >= self.account_threshold)
            if streak >= self.account_persist:
                out.append(self._account_finding(account_id, acc, base, closed, scores, lift,
                                                 extraction, young))
            base.learn_one(x)
            pop = self._population(tier)
            pop.learn("log_requests", math.log1p(n))
            pop.learn("log_output_tokens", math.log1p(acc.output_tokens))
            keys = cluster_keys(ev)
            if extraction >= self.suspicious and acc.fps:
                # Template discovery only for suspicious accounts: the index stays small.
                seen_groups = set()
                for fp in acc.fps[:4]:
                    v = fingerprint_int(fp)
                    if v is None:
                        continue
                    gid = templates.lookup(v, end)
                    if gid is None:
                        templates.add(v, account_id)
                    elif gid not in seen_groups:
                        seen_groups.add(gid)
                        keys.append(("tpl", gid))
            spread = base.timing_spread
            clusters.observe(
                account_id,
                keys,
                extraction=extraction,
                young=young,
                regular=spread == spread and spread < 0.3,
                requests=n,
                output_tokens=acc.output_tokens,
                org=ev.org_id,
                models=acc.models if extraction >= self.suspicious else None,
                ts=closed.start,
            )
        # Template groups founded in this window count their founders right away.
        for account_id, gid in templates.promote(end).items():
            acc = closed.accounts.get(account_id)
            base = self._baselines[account_id]
            age = base.age_days(end)
            spread = base.timing_spread
            clusters.observe(
                account_id,
                [("tpl", gid)],
                extraction=base.extraction_likeness(end, young_cut),
                young=age == age and age < young_cut,
                regular=spread == spread and spread < 0.3,
                requests=acc.requests if acc is not None else 0,
                output_tokens=acc.output_tokens if acc is not None else 0,
                org=acc.last_event.org_id if acc is not None and acc.last_event else None,
                models=None,
                ts=closed.start,
            )
        if closed.end % (self.window_s * self.clusters.cluster_windows) == 0:
            templates.end_window()
        out.extend(clusters.end_window(closed.start, closed.end))
        return out

    def _account_finding(
        self,
        account_id: str,
        acc: AccountWindow,
        base: AccountBaseline,
        closed: ClosedWindow,
        scores: dict[str, float],
        lift: float,
        extraction: float,
        young: bool,
    ) -> Finding:
        score = max(scores.values())
        critical = score >= self.account_critical_z and young and extraction >= self.suspicious
        feats = {k: (None if v != v else round(v, 4)) for k, v in window_features(acc).items()}
        signals = [{"signal": k, "score": round(v, 3)} for k, v in scores.items()]
        signals.append({"signal": "extraction_likeness", "score": round(extraction, 3)})
        return Finding(
            entity_type="account",
            entity_id=account_id,
            detector="account_baseline",
            window_start=closed.start,
            window_end=closed.end,
            score=round(score, 3),
            threshold=self.account_threshold,
            severity="critical" if critical else "warning",
            evidence={
                "features": feats,
                "baseline": base.baseline(),
                "profile": {
                    k: (None if v != v else round(v, 3))
                    for k, v in base.profile(closed.end).items()
                },
                "population_lift": round(math.exp(lift), 3),
                "score": round(score, 3),
                "threshold": self.account_threshold,
                "signals": sorted(signals, key=lambda s: -s["score"]),
            },
        )


class Monitor:
    """Detection plus alert lifecycle in one object: the offline path (``replay``, tests).

    Takes every :class:`Detection` keyword, plus ``quiet_windows`` for the
    :class:`~detectors.alerts.AlertBook`.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        lateness_s: float = 10.0,
        account_grace: int = 5,
        account_threshold: float = 6.0,
        quiet_windows: int = 3,
        max_members: int = 10_000,
        **detection: Any,
    ) -> None:
        self.detection = Detection(
            window_s,
            lateness_s,
            account_grace,
            account_threshold,
            max_members=max_members,
            **detection,
        )
        self.alerts = AlertBook(window_s, quiet_windows, max_members)
        self._due = float("-inf")

    def _fold(self, findings: Iterable[Finding], watermark: float) -> list[dict[str, Any]]:
        changes = [c for f in findings if (c := self.alerts.observe(f)) is not None]
        changes.extend(self.alerts.tick(watermark))
        return changes

    def add(self, ev: Event) -> list[dict[str, Any]]:
        """Count one event; return alert changes from any windows it lets close."""
        det = self.detection
        det.add(ev)
        wm = det.windower.watermark
        if wm < self._due:
            return []
        changes = self._fold(det.advance(wm), wm)
        self._due = det.windower.next_close
        return changes

    def flush(self) -> list[dict[str, Any]]:
        """End of input: close every open window, then resolve every open alert (its last
        state, with the full member list, is the final word of the replay)."""
        det = self.detection
        wm = det.windower.watermark + det.window_s + det.lateness_s
        changes = self._fold(det.advance(wm), wm)
        end = wm + self.alerts.quiet_windows * self.alerts.window_s
        changes.extend(self.alerts.tick(end))
        return changes

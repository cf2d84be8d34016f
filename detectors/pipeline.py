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

import heapq
import logging
import math
from collections.abc import Iterable
from typing import Any

from detectors.alerts import AlertBook
from detectors.baseline import AccountBaseline
from detectors.baseline_rule import BaselineRule
from detectors.clusterchain import LocalClusterStages
from detectors.coactivity import CoactivityDetector
from detectors.cohort import CohortDetector, account_view
from detectors.events import Event
from detectors.extraction_rule import ExtractionRule
from detectors.findings import Finding
from detectors.keys import key_labels, labelled_keys
from detectors.params import DetectionParams
from detectors.population import PopulationModel
from detectors.ramp_rule import RampRule
from detectors.shift_rule import ProfileShiftRule
from detectors.summary import AccountSummary, WindowSummaries
from detectors.windows import ClosedWindow, Windower

__all__ = ["Detection", "Monitor"]

log = logging.getLogger(__name__)

#: Account rules whose finding says the account harvests (not merely departs from its rate).
_HARVEST_RULES = frozenset({"account_extraction", "account_profile_shift", "account_ramp"})

class Detection:
    """Windows, features and detectors for every account and cluster.

    Parameters
    ----------
    params
        Every parameter, with its default: :class:`~detectors.params.DetectionParams`.
    overrides
        Flat-named changes to ``params`` (``window_s=30``, ``account_threshold=8``: the
        configuration's field names), for tests and tools.
    local_clusters
        Run the cluster stages (:class:`~detectors.clusterchain.LocalClusterStages`) in this
        object, on every closed window (``replay``, tests). The worker passes False: it
        publishes the window's suspects' summaries and the other account-windows' key
        labels (:meth:`pop_summaries`) to the per-key stage and campaign assembly runs on
        its own topic.

    The per-account rules are :class:`~detectors.baseline_rule.BaselineRule`
    (``account_baseline``), :class:`~detectors.extraction_rule.ExtractionRule`
    (``account_extraction``) and :class:`~detectors.shift_rule.ProfileShiftRule`
    (``account_profile_shift``); their per-account state lives in the account's
    :class:`~detectors.baseline.AccountBaseline`.

    Eviction (``account_ttl_s``): an account whose last active window started this long ago
    (event time, never wall time, so the worker and ``replay`` evict the same accounts)
    loses its state: it is evicted at the first window close past the horizon, or up to
    1/128 of the horizon later (accounts are indexed in buckets of last activity, so
    eviction costs the evicted accounts, not a scan of all of them). If it comes back it
    starts again from its cohort's prior, like a new account. The default, 7 days, is well
    past the baseline's longest clock memory (the daily output bucket, decayed to e^-7 < 0.1 %
    after a week) and matches ``validation.max_past_s``: no event older than that can reach
    a window anyway. Must exceed a cluster window (template founders are looked up after
    their window closes).
    """

    def __init__(
        self,
        params: DetectionParams | None = None,
        *,
        local_clusters: bool = True,
        **overrides: Any,
    ) -> None:
        p = params or DetectionParams()
        if overrides:
            p = p.replace_flat(**overrides)
        window_s = p.window_s
        if not p.account_ttl_s > window_s * p.cluster_windows:
            raise ValueError(
                f"account_ttl_s must exceed a cluster window ({window_s * p.cluster_windows} s), "
                f"got {p.account_ttl_s}"
            )
        self.params = p
        self.window_s = window_s
        self.lateness_s = p.lateness_s
        self.account_grace = p.account_grace
        self.account_threshold = p.baseline.threshold
        self.account_hold_s = p.account_hold_s
        self.young_days = p.young_days
        self.suspicious = p.suspicious
        self.population_min_accounts = p.population_min_accounts
        self.baseline_rule = BaselineRule(p.baseline, p.suspicious)
        self.extraction_rule = ExtractionRule(p.extraction)
        self.shift_rule = ProfileShiftRule(p.shift)
        self.ramp_rule = RampRule(p.ramp)
        lateness_s = p.lateness_s
        suspicious = p.suspicious
        max_members = p.max_members
        cluster_windows = p.cluster_windows
        account_ttl_s = p.account_ttl_s
        coordination = p.coordination
        self.windower = Windower(window_s, lateness_s)
        self._baselines: dict[str, AccountBaseline] = {}
        self._touched: set[str] = set()
        self._populations: dict[str, PopulationModel] = {}
        #: The cluster-stage keywords, for whoever runs campaign assembly on its own.
        self.cluster_kwargs: dict[str, Any] = dict(
            window_s=window_s,
            suspicious=suspicious,
            cluster_windows=cluster_windows,
            cluster_min_members=p.cluster_min_members,
            cluster_min_share=p.cluster_min_share,
            cluster_min_z=p.cluster_min_z,
            cluster_critical_members=p.cluster_critical_members,
            cluster_critical_young_share=p.cluster_critical_young_share,
            cluster_hold_windows=p.cluster_hold_windows,
            cluster_critical_harvest_tokens=p.cluster_critical_harvest_tokens,
            cluster_fold_share=p.cluster_fold_share,
            template_min_accounts=p.template_min_accounts,
            template_max_bits=p.template_max_bits,
            max_members=max_members,
        )
        self.cluster_stages = LocalClusterStages(**self.cluster_kwargs) if local_clusters else None
        # Without local cluster stages: each closed window's summaries and plain key labels,
        # for the worker to publish (pop_summaries).
        self.summaries: list[WindowSummaries] = []
        #: Make an AccountSummary (with key tuples) of every account-window, suspect or not,
        #: as before issue 16: for tests that compare the wire bytes of the two ways.
        self.summarize_all = False
        # The swarm detector judges every account younger than the detection's young_days
        # (30), not only throwaways (its own default, 2 days): a slow campaign's accounts,
        # opened days before use, share a card and a /24 long before any one of them is
        # loud enough for the account rules. A swarm that is mostly an open campaign's
        # accounts (every hydra, seen this way) is folded into that campaign by campaign
        # assembly rather than alerted twice (ClusterDetector.fold).
        self.cohort = (
            CohortDetector(young_days=p.young_days, max_members=max_members)
            if coordination else None
        )
        self.coactivity = CoactivityDetector(max_members=max_members) if coordination else None
        self.windows_closed = 0
        # Account-windows skipped because detection raised (metric: detect_errors).
        self.detect_errors = 0
        self._failed_window = math.nan
        self._lifts: dict[str, float] = {}
        self._priors: dict[str, Any] = {}
        self._held: dict[tuple[str, str], tuple[Finding, float]] = {}
        self._sample = 0
        # Eviction index: accounts by bucket of last activity (a whole number of windows, so
        # a window never straddles two buckets), and a heap of the live bucket numbers.
        self.account_ttl_s = account_ttl_s
        self._bucket_s = window_s * max(1, round(account_ttl_s / 128 / window_s))
        # An account's bucket is kept on its baseline (AccountBaseline.bucket: a slot, where a
        # dict of account -> bucket was ~40 bytes an account); bucket -> accounts filed there
        # when they moved to it. An entry is not removed when the account moves on (or is
        # dropped): eviction skips accounts whose bucket is no longer this one. A list entry
        # is 8 bytes, a set entry was 30-50. Stale entries are counted per bucket and a list
        # is compacted once more than half of it is stale: an account active all week passes
        # through every bucket, and must not keep an entry in each (nor did a set shrink).
        self._by_bucket: dict[int, list[str]] = {}
        self._stale: dict[int, int] = {}
        self._bucket_heap: list[int] = []
        self._last_bucket = -1  # the last bucket number filed (one int object per bucket)
        self.accounts_evicted = 0

    @property
    def active_accounts(self) -> int:
        return len(self._baselines)

    def pop_summaries(self) -> list[WindowSummaries]:
        """Account summaries (the suspects'), the other account-windows' key labels and the
        swarm groups of the windows closed since the last call (``local_clusters`` off),
        oldest window first."""
        out, self.summaries = self.summaries, []
        return out

    # -- durable per-account state: the worker saves it per closed window --------------------

    def pop_touched(self) -> set[str]:
        """Accounts whose state may have changed in the windows closed since the last call."""
        out, self._touched = self._touched, set()
        return out

    def export_account(self, account_id: str) -> bytes | None:
        """The account's learned state as bytes (``None`` if it has none)."""
        base = self._baselines.get(account_id)
        return None if base is None else base.to_bytes()

    def import_account(self, account_id: str, blob: bytes) -> None:
        """Restore what :meth:`export_account` saved (after a restart or a rebalance).

        Raises :class:`~detectors.baseline.StateFormatError` for anything that is not a
        baseline in the current format; the account is then left without state. The blob
        is only ever parsed as numbers: whoever can write to the changelog topic cannot make
        this run code."""
        base = AccountBaseline.from_bytes(blob)
        base.account_id = account_id
        old = self._baselines.get(account_id)
        if old is not None and old.bucket is not None:
            self._left(old.bucket)
        self._baselines[account_id] = base
        ts = base.last_ts
        # A forged or never-observed time files the account as long idle: evicted at the
        # next window close instead of never.
        self._mark_active(base, int((ts if math.isfinite(ts) else 0.0) // self._bucket_s))

    def has_open_window(self, account_id: str) -> bool:
        """Whether the account has counters in a window that has not closed yet."""
        return any(account_id in b for b in self.windower._buckets.values())

    def drop_accounts(self, account_ids: Iterable[str]) -> None:
        """Forget accounts another worker now owns: their state and open-window counters."""
        ids = set(account_ids)
        for account_id in ids:
            base = self._baselines.pop(account_id, None)
            if base is not None and base.bucket is not None:
                self._left(base.bucket)  # its _by_bucket entry is now stale
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
            # Filed after detection, which made the new accounts' baselines (an account
            # whose detection failed before that has no state to evict).
            mark, baselines = self._mark_active, self._baselines
            # Most accounts are filed in the window's bucket already (a bucket spans many
            # windows), and skip the call.
            b = int(closed.start // self._bucket_s)
            for account_id in closed.accounts:
                base = baselines.get(account_id)
                if base is not None and base.bucket != b:
                    mark(base, b)
            self._evict(closed.end)
        return out

    # -- eviction of inactive accounts (event time) --------------------------------------------

    def _mark_active(self, base: AccountBaseline, b: int) -> None:
        """File the account under last-activity bucket ``b`` (``ts // bucket_s``)."""
        if base.bucket == b:
            return
        if b == self._last_bucket:
            b = self._last_bucket  # the same int object for every account of the bucket
        else:
            self._last_bucket = b
        old = base.bucket
        base.bucket = b
        if old is not None:
            self._left(old)  # its entry there is now stale
        account_id = base.account_id  # the id object its state is keyed by
        by_bucket = self._by_bucket
        ids = by_bucket.get(b)
        if ids is None:
            ids = by_bucket[b] = []
            heapq.heappush(self._bucket_heap, b)
        ids.append(account_id)

    def _left(self, b: int) -> None:
        """An account's entry in bucket ``b``'s list went stale; compact the list once more
        than half of it is (amortised O(1) per move; duplicates go too)."""
        filed = self._by_bucket.get(b)
        if filed is None:
            return
        n = self._stale.get(b, 0) + 1
        if 2 * n > len(filed):
            baselines = self._baselines
            self._by_bucket[b] = [a for a in dict.fromkeys(filed)
                                  if (x := baselines.get(a)) is not None and x.bucket == b]
            n = 0
        self._stale[b] = n

    def _evict(self, now: float) -> None:
        """Drop every account whose last-activity bucket ended ``account_ttl_s`` before
        ``now``. Evicted accounts are reported as touched: the state store writes a
        tombstone for an account that no longer exports any state."""
        cutoff = now - self.account_ttl_s
        heap, by_bucket, bs = self._bucket_heap, self._by_bucket, self._bucket_s
        while heap and (heap[0] + 1) * bs <= cutoff:
            b = heapq.heappop(heap)
            self._stale.pop(b, None)
            filed = by_bucket.pop(b, None)
            if not filed:
                continue
            baselines = self._baselines
            # The accounts still in this bucket (an entry whose account moved on, or was
            # dropped, is stale; one filed twice here is evicted once).
            ids = {a for a in filed
                   if (base := baselines.get(a)) is not None and base.bucket == b}
            for account_id in ids:
                del baselines[account_id]
            self.accounts_evicted += len(ids)
            self._touched.update(ids)

    # -- per closed window ---------------------------------------------------------------------

    def _detect_failed(self, account_id: str, closed: ClosedWindow, err: Exception) -> None:
        """Count an account whose detection raised; log the first of each window only (a
        systematic bug must not flood the log). The id is escaped and cut: it is input."""
        self.detect_errors += 1
        if self._failed_window != closed.start:
            self._failed_window = closed.start
            log.error(
                "detection failed for account %s in window %s, skipped: %s",
                ascii(account_id[:64]),
                closed.start,
                ascii(f"{type(err).__name__}: {err}"[:200]),
            )

    def _population(self, tier: str) -> PopulationModel:
        pop = self._populations.get(tier)
        if pop is None:
            pop = self._populations[tier] = PopulationModel()
        return pop

    def _baseline(self, account_id: str, tier: str) -> AccountBaseline:
        prior = self._priors.get(tier, False)
        if prior is False:
            # One cohort prior per tier and window: the population's quantiles move slowly.
            pop = self._population(tier)
            req, out = pop.prior("log_requests"), pop.prior("log_output_tokens")
            prior = None
            if req is not None and out is not None:
                prior = {"requests": req, "output_tokens": out}
            self._priors[tier] = prior
        base = self._baselines[account_id] = AccountBaseline(
            grace_period=self.account_grace, threshold=self.account_threshold, prior=prior,
            account_id=account_id,
        )
        return base

    def _detect(self, closed: ClosedWindow) -> list[Finding]:
        out: list[Finding] = []
        summaries: list[AccountSummary] = []
        baselines = self._baselines
        end = closed.end
        young_cut = self.young_days
        suspicious = self.suspicious
        baseline_rule = self.baseline_rule
        extraction_rule = self.extraction_rule
        shift_rule = self.shift_rule
        ramp_rule = self.ramp_rule
        ramp_gap = ramp_rule.params.max_gap_h
        ramp_alert_z = ramp_rule.params.alert_z
        sustained: set[str] | None = None
        grace = self.account_grace
        lifts = self._lifts
        rises: dict[str, list[float]] = {}
        log1p = math.log1p
        cohort, coact = self.cohort, self.coactivity
        start = closed.start
        # The key labels of the account-windows that are no suspect (flat: strings are not
        # tracked by the collector); the summaries are then only the suspects'. The worker
        # also needs to know whose labels they are (it publishes per source): every
        # account-window that counts, in order, with how many labels are its or -1 for "has
        # the next summary" (WindowSummaries).
        plain_labels: list[str] = []
        local = self.cluster_stages is not None
        accounts: list[str] = []
        sizes: list[int] = []
        # The cluster stages' bar (cluster_kwargs: the same value, in-process or not).
        plain_below = None if self.summarize_all else self.suspicious
        self._sample += 1
        self._priors = {}
        learn_population = self._sample % 4 == 0
        for account_id, acc in closed.accounts.items():
            links: list[str] | None = None
            # One account that makes detection raise (a bug or an input no bound foresaw) is
            # counted and skipped; the window closes for every other account. One try around
            # the body costs nothing on the hot path.
            try:
                ev = acc.last_event
                assert ev is not None
                tier = ev.tier or "-"
                base = baselines.get(account_id)
                if base is None:
                    base = self._baseline(account_id, tier)
                elif base.account_id is not None:
                    # The id object the account's state is already keyed by: every detector
                    # below keeps this one, not a copy per window (the window's is freed).
                    account_id = base.account_id
                n = acc.requests
                out_tok = acc.output_tokens
                lreq = log1p(n)
                lout = log1p(out_tok)
                lift = lifts.get(tier, 0.0)
                if base.seen() >= grace:
                    # The tier's lift (median rise of its accounts) is measured on this window
                    # and applied from the next one.
                    rise = rises.get(tier)
                    if rise is None:
                        rise = rises[tier] = []
                    rise.append(lreq - base.expected_log("requests"))
                z_req, z_out = base.log_scores(lreq - lift, lout - lift)
                # Each account teaches its tier its hourly rate once per clock hour, so the
                # population is one vote per account, not one per busy window.
                new_hour = base.last_ts // 3600.0 != acc.first_ts // 3600.0
                scores = {"requests": z_req, "output_tokens": z_out}
                score = baseline_rule.score_one(scores)
                base.observe(
                    acc.first_ts,
                    acc.last_ts,
                    n,
                    out_tok,
                    1.0 - acc.multi_turn / n,
                    acc.max_tokens_stops / n,
                    ev.account_created_ts,
                    acc.harvest_like,
                )
                extraction = base.extraction_likeness(end, young_cut)
                age = base.age_days(end)
                young = age == age and age < young_cut
                if baseline_rule.streak_fires(score, base):
                    out.append(baseline_rule.finding(
                        account_id, acc, base, closed, scores, lift, extraction, young
                    ))
                base.learn_log(lreq, lout)
                hourly = base.hourly_requests
                if extraction_rule.eligible(extraction, young, hourly):
                    pop = self._population(tier)
                    pop_z = pop.robust_z("log_hourly_requests", log1p(hourly))
                    if extraction_rule.fires(pop_z, end - base.last_flag):
                        base.last_flag = end
                        out.append(extraction_rule.finding(
                            account_id, acc, base, closed, pop_z, hourly, extraction,
                            pop.quantile("log_hourly_requests", 0.5),
                        ))
                if shift_rule.eligible(
                    acc.harvest_like, young, base.windows, base.usual_single_turn_share
                ):
                    h, hb, hz = base.harvest_shift()
                    if shift_rule.fires(h, hz):
                        out.append(shift_rule.finding(account_id, acc, base, closed, h, hb, hz))
                # The low-and-slow ramp: harvest sustained hour after hour (one run per
                # account, counted on every window; judged only for young harvest profiles).
                base.observe_ramp(acc.first_ts, acc.harvest_like, ramp_gap)
                if ramp_rule.profiled(extraction, young):
                    rs = base.ramp_stats()
                    if ramp_rule.sustained(extraction=extraction, young=young, hours=rs[0],
                                           active=rs[1], trend_z=rs[3]):
                        # A harvester for campaign assembly's pair (accomplice) rule.
                        if sustained is None:
                            sustained = set()
                        sustained.add(account_id)
                        if rs[3] >= ramp_alert_z:
                            out.append(ramp_rule.finding(
                                account_id, acc, base, closed, extraction, rs
                            ))
                if new_hour:
                    self._population(tier).learn("log_hourly_requests", log1p(hourly))
                if learn_population:
                    pop = self._population(tier)
                    pop.learn("log_requests", lreq)
                    pop.learn("log_output_tokens", lout)

                is_susp = extraction >= suspicious
                spread = base.timing_spread
                x_wire = min(1.0, max(0.0, extraction))
                if plain_below is not None and x_wire < plain_below:
                    # No suspect: only its key labels count, so no summary and no key tuples
                    # (ten tracked objects an account-window, alive until the window is
                    # routed, were most of the collector's work at close). Added last, as
                    # the summary is: an account whose detection raised counts in neither.
                    labels, links = key_labels(ev)
                    plain_labels += labels
                    if not local:
                        accounts.append(account_id)
                        sizes.append(len(labels))
                else:
                    lk = labelled_keys(ev)
                    links = lk.links
                    summaries.append(AccountSummary(
                        account_id,
                        closed.start,
                        lk.keys,
                        x_wire,
                        young,
                        spread == spread and spread < 0.3,
                        n,
                        out_tok,
                        ev.org_id,
                        dict(acc.models) if is_susp and acc.models else None,
                        list(acc.fps[:4]) if is_susp and acc.fps else [],
                        False,
                        lk.labels,
                    ))
                    if not local:
                        accounts.append(account_id)
                        sizes.append(-1)
            except Exception as err:
                self._detect_failed(account_id, closed, err)
            if cohort is not None and coact is not None:
                # The swarm and lockstep views of the account-window, learnt in this loop
                # with the link labels just made (they read no state of the rules above, nor
                # the rules theirs, so learning them here or in a second pass over the window
                # is the same). An account whose detection failed still counts here.
                try:
                    x = account_view(account_id, acc, start, links)
                    cohort.learn_one(x)
                    coact.learn_one(x)
                except Exception as err:
                    self._detect_failed(account_id, closed, err)
        new_lifts = {}
        for tier, xs in rises.items():
            if len(xs) >= self.population_min_accounts:
                xs.sort()
                new_lifts[tier] = max(0.0, xs[len(xs) // 2])
        self._lifts = new_lifts
        self._hold(out, closed)
        # Accounts an account rule calls harvesters now (held findings included): campaign
        # assembly looks for their accomplices on shared strong keys.
        harvesters = {f.entity_id for f in out
                      if f.detector in _HARVEST_RULES and f.severity != "info"}
        if sustained:
            harvesters |= sustained
        if harvesters:
            # Only summaries carry the mark: an account-window below suspicious has none, and
            # route never put a non-suspect's summary (nor its mark) on the wire.
            for s in summaries:
                if s.account_id in harvesters:
                    s.harvester = True
        groups: list[Finding] = []
        lockstep: list[Finding] = []
        if cohort is not None and coact is not None:
            groups, lockstep = self._coordination(closed, cohort, coact)
        if self.cluster_stages is not None:
            out.extend(self.cluster_stages.window(closed.start, summaries, groups,
                                                  plain_labels=plain_labels))
        else:
            self.summaries.append(WindowSummaries(closed.start, summaries, accounts, sizes,
                                                  plain_labels, groups))
        out.extend(lockstep)
        return out

    def _coordination(
        self, closed: ClosedWindow, cohort: CohortDetector, coact: CoactivityDetector
    ) -> tuple[list[Finding], list[Finding]]:
        """Swarm and lockstep groups of this window (its account-windows were learnt in
        ``_detect``). Swarm groups go on to campaign assembly, which folds one that is mostly
        a campaign's members into that campaign (one alert per operator); lockstep groups are
        findings as they are. Neither is held (their findings carry members)."""
        return (cohort.end_window(closed.start, closed.end),
                coact.end_window(closed.start, closed.end))

    def _hold(self, out: list[Finding], closed: ClosedWindow) -> None:
        """Keep an account finding alive for ``account_hold_s`` after it last fired, so a
        low-rate account (quiet windows between its requests) is one alert, not a flapping
        series. Re-emitted findings carry the original evidence and the new window."""
        held = self._held
        fired = set()
        for f in out:
            key = (f.entity_id, f.detector)
            fired.add(key)
            held[key] = (f, closed.end + self.account_hold_s)
        for key, (f, until) in list(held.items()):
            if key in fired:
                continue
            if closed.end > until:
                del held[key]
                continue
            out.append(
                Finding(
                    f.entity_type,
                    f.entity_id,
                    f.detector,
                    closed.start,
                    closed.end,
                    f.score,
                    f.threshold,
                    f.severity,
                    {**f.evidence, "held_from_window_end": f.window_end},
                    org_id=f.org_id,
                )
            )


class Monitor:
    """Detection plus alert lifecycle in one object: the offline path (``replay``, tests).

    Takes what :class:`Detection` takes; ``quiet_windows`` and ``max_members`` of the
    parameters also configure the :class:`~detectors.alerts.AlertBook`.
    """

    def __init__(self, params: DetectionParams | None = None, **overrides: Any) -> None:
        self.detection = Detection(params, **overrides)
        p = self.detection.params
        self.alerts = AlertBook(p.window_s, p.quiet_windows, p.max_members)
        self._due = float("-inf")

    def _fold(self, findings: Iterable[Finding], watermark: float) -> list[dict[str, Any]]:
        changes = [c for f in findings for c in self.alerts.observe(f)]
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
        last_event = det.windower.watermark
        changes = self._fold(det.advance(wm), wm)
        # Record the final state of every open alert (members that joined since the last
        # update), stamped with the last event's time, then resolve them.
        changes.extend(self.alerts.refresh(min(wm, last_event)))
        end = wm + self.alerts.quiet_windows * self.alerts.window_s
        changes.extend(self.alerts.tick(end))
        return changes

"""Lockstep groups: accounts whose activity starts and stops in the same minutes, again and
again, while each one's volume and content look ordinary.

SynchroTrap and CopyCatch find such groups in batch, by comparing accounts' action times
pairwise over days. Online and with bounded memory, :class:`CoactivityDetector` hashes each
account's *activity runs* (a run starts at the first active minute after ``gap_minutes``
idle ones and stops at the last active minute before the next such gap) into buckets keyed
by the minute they start and the minute they stop — an exact-match LSH whose keys are the
run boundaries. Independent accounts start and stop runs at scattered minutes: a bucket
holds about as many accounts as a Poisson draw with the recent rate of starts (or stops)
per minute, learned locally (a slow EW and the median of the last ten minutes, so a
sustained rise of many different accounts is a new rate within minutes, not a sync) and per
minute of the hour (hourly crons are a seasonal rate, not a surprise). A bucket above that
(Chernoff bound on the Poisson tail below ``10**-mild_log10``) is a *sync minute*; its
accounts in step (the tightest span of their request times that holds the excess over
chance) join the group most of them already
belong to, or found a new one. The group's evidence is the sum of log10 chances: of its
founding minute, then for each later minute of either its own count (below
``10**-sync_log10``) or of its overlap with the group (how many of its accounts are
already members, against what random accounts drawn from the recently active ones would
give), whichever is smaller. A large group in step is thus reported at its first start
minute; a small or loosely timed one (a minute spike that chance could give now and then)
once the same accounts recur. An account's support is the number of its group's sync
minutes it took part in. The group is reported once its evidence is below
``10**-early_log10``, it has ``min_members`` supported members, and its members come from
enough distinct orgs: one customer's service accounts fired by one cron, or one lab's
evaluation keys, are the benign case.

Runs that start (or stop) exactly 15, 30, 60, 120 or 180 minutes after the account's
previous run are a timer's and are not counted: many independent customers' cron jobs fire
at minute 0 of every hour, which is synchrony without coordination.

State per account: while it is in a run, one ``bytes`` record (the run's first and last
minute as int32 and the times of its first and last request as float64, then its org and a
64-bit key of its payment; about 80 bytes with a 14-character org, 120 with the id's dict
entry) and one list entry under the minute its
run last grew to; for about three hours after a run, its start and stop minute (one
``complex``, 32 bytes); if it is in a group, its support count there. Groups are dropped
``horizon_s`` after their last sync minute.

Examples
--------
>>> det = CoactivityDetector(min_members=20, warmup_minutes=0)
>>> def active(a, minute):
...     det.learn_one({"account_id": a, "ts": minute * 60.0, "org": f"org-{a}"})
>>> found = []
>>> for minute in range(200):
...     for i in range(3):  # background: a few runs start every minute
...         active(f"bg{minute}-{i}", minute)
...     if minute in (100, 101, 102, 150, 151):  # 30 accounts in step, two sessions
...         for i in range(30):
...             active(f"g{i}", minute)
...     found += det.end_window(minute * 60.0, minute * 60.0 + 60)

The first session's start is already far beyond chance (33 runs start in minute 100 where
about 3 do): the group is reported at once, with the 3 accounts that started there by
chance.

>>> f = found[0]
>>> f.entity_id, f.member_count, f.evidence["features"]["sync_minutes"]
('lockstep-6000', 33, 1)
>>> s = f.evidence["signals"][0]
>>> s["observed"], s["expected"], s["log10_chance"]
(33, 3.0, -21.3)

Once the group has repeated (start and stop of session one, start of session two), only
accounts seen in at least two of its sync minutes are listed.

>>> f = found[-1]
>>> f.member_count, f.evidence["features"]["sync_minutes"], f.severity
(30, 4, 'warning')
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from detectors.findings import Finding

__all__ = ["CoactivityDetector", "poisson_tail_log10"]

_LN10 = math.log(10.0)
#: Minutes between two runs of one account that mark a timer (cron every 15/30/60/120/180
#: minutes): such runs are not counted. Hundreds of independent customers' jobs start at
#: minute 0 of every hour; a lockstep operator's sessions come at irregular times.
_CRON_PERIODS = frozenset({15, 30, 60, 120, 180})
#: How long the previous run is remembered (the longest period above, and then some).
_PREV_MINUTES = 200
#: A run's record: start minute and last minute (int32: minutes since 1970 fit until the
#: year 6053, see :data:`_MINUTES`), first and last request time (float64), then a flags
#: byte (which of org and payment the account declared), the payment's 8-byte key
#: (:func:`_pay_key`) and the org's UTF-8 to the end. One bytes object instead of a list of
#: six objects: ~80 bytes per account in a run instead of ~330, none GC-tracked.
_RUN = struct.Struct("<iidd")
#: Minutes a run record holds. An account-window outside them (a replay with unbounded
#: event times, ts beyond +-4,000 years) is not learnt: no real stream has one.
_MINUTES = range(-(2**31), 2**31)
_HAS_ORG = 1
_HAS_PAY = 2
_PAY_BYTES = 8


def _pay_key(pay: str) -> int:
    """What a run keeps of a payment fingerprint: a stable 64-bit digest. Groups only count
    their distinct payments, and two of a group's payments share a digest with a chance of
    about ``n**2 / 2**65`` (issue 16: the string and its length were ~19 bytes a run).

    >>> _pay_key("pm_1") == _pay_key("pm_1") != _pay_key("pm_2")
    True
    """
    digest = hashlib.blake2b(pay.encode("utf-8", "surrogatepass"), digest_size=_PAY_BYTES)
    return int.from_bytes(digest.digest(), "little")


def _pack_ids(org: str | None, pay: str | None) -> bytes:
    """The tail of a run record: flags, payment key, org."""
    for v in (org, pay):
        if v is not None and not isinstance(v, str):
            raise TypeError(f"org and payment must be str or None, got {type(v).__name__}")
    flags = (_HAS_ORG if org is not None else 0) | (_HAS_PAY if pay is not None else 0)
    out = bytes((flags,))
    if pay is not None:
        out += _pay_key(pay).to_bytes(_PAY_BYTES, "little")
    if org is not None:
        out += org.encode("utf-8", "surrogatepass")
    return out


def _unpack_ids(rec: bytes) -> tuple[str | None, int | None]:
    """Org and payment key of a run record.

    >>> _unpack_ids(_RUN.pack(1, 2, 3.0, 4.0) + _pack_ids("org-é", None))
    ('org-é', None)
    >>> _unpack_ids(_RUN.pack(1, 2, 3.0, 4.0) + _pack_ids(None, "pm")) == (None, _pay_key("pm"))
    True
    """
    off = _RUN.size
    flags = rec[off]
    off += 1
    pay = None
    if flags & _HAS_PAY:
        pay = int.from_bytes(rec[off:off + _PAY_BYTES], "little")
        off += _PAY_BYTES
    org = rec[off:].decode("utf-8", "surrogatepass") if flags & _HAS_ORG else None
    return org, pay


def poisson_tail_log10(k: int, lam: float) -> float:
    """Chernoff bound on log10 P(X >= k) for X ~ Poisson(lam): 0 when k <= lam.

    >>> round(poisson_tail_log10(30, 3.0), 1)
    -18.3
    """
    if k <= lam:
        return 0.0
    return (k - lam - k * math.log(k / lam)) / _LN10


@dataclass(slots=True)
class _Sync:
    gid: str
    first_ts: float
    last_ts: float = 0.0
    support: dict[str, int] = field(default_factory=dict)
    orgs: dict[str, str] = field(default_factory=dict)
    pays: dict[str, int] = field(default_factory=dict)  # account -> payment key
    minutes: list[dict[str, Any]] = field(default_factory=list)  # newest sync minutes
    n_minutes: int = 0
    days: set[int] = field(default_factory=set)
    log10_chance: float = 0.0
    first_log10: float = 0.0  # the founding minute's own chance
    reported: bool = False


class CoactivityDetector:
    """Online lockstep detection over per-minute account activity (River manners:
    ``learn_one`` per active account-minute, ``score_one`` is the account's support in its
    group; groups come out of :meth:`end_window` as findings).

    Parameters
    ----------
    gap_minutes
        Idle minutes that end a run. Longer gaps split fewer ordinary sessions in two, but a
        stop is known only this long after it happened.
    min_token
        Accounts a bucket needs before its chance is even computed.
    mild_log10
        A bucket whose Poisson chance is below ``10**-mild_log10`` is a sync minute: it founds
        or joins a group, but chance gives one now and then, so alone it reports nothing.
    sync_log10
        A sync minute joins the group most of its accounts are in when its own chance times
        that of its overlap with the group is below ``10**-sync_log10`` (or the overlap
        alone is below ``10**-mild_log10``).
    early_log10
        Combined log10 chance a group needs to be reported (a single minute of 36 accounts
        where 3 are expected is enough).
    min_members
        Supported members a group needs to be reported.
    min_org_share
        Distinct orgs over members needed: one org's fleet is not a lockstep campaign.
    warmup_minutes
        Minutes of learning before any bucket is judged (at the start of a stream every
        active account is starting a run).
    horizon_s, hold_s
        A group is forgotten this long after its last sync minute, and reported for
        ``hold_s`` after it (a day and then some: one alert for a group that meets daily).
    critical_members, critical_days
        A group with this many members over this many days is critical.
    max_members
        Cap on the members listed per finding.
    """

    def __init__(
        self,
        gap_minutes: int = 15,
        min_token: int = 10,
        mild_log10: float = 4.0,
        sync_log10: float = 8.0,
        early_log10: float = 15.0,
        min_members: int = 20,
        min_org_share: float = 0.5,
        warmup_minutes: int = 60,
        horizon_s: float = 7 * 86400.0,
        hold_s: float = 26 * 3600.0,
        critical_members: int = 50,
        critical_days: int = 2,
        max_members: int = 10_000,
    ) -> None:
        self.gap_minutes = gap_minutes
        self.min_token = min_token
        self.mild_log10 = mild_log10
        self.sync_log10 = sync_log10
        self.early_log10 = early_log10
        self.min_members = min_members
        self.min_org_share = min_org_share
        self.warmup_minutes = warmup_minutes
        self.horizon_s = horizon_s
        self.hold_s = hold_s
        self.critical_members = critical_members
        self.critical_days = critical_days
        self.max_members = max_members
        # account -> its run's record (_RUN: start minute, last active minute, first and
        # last request ts; then org and payment)
        self._run: dict[str, bytes] = {}
        # minute -> accounts whose run's last minute became that minute. Entries are not
        # removed when a run grows on or is replaced: a list entry is 8 bytes where a set
        # entry was 30-50 (and sets never shrink), and the stale ones are filtered out when
        # the minute is judged (the run's last minute is no longer that minute).
        self._by_last: dict[int, list[str]] = {}
        self._stale: dict[int, int] = {}  # minute -> stale entries in its list (see _left)
        self._starts: dict[int, list[str]] = {}
        self._rate = {"start": 0.0, "stop": 0.0}
        self._hourly = {"start": [0.0] * 60, "stop": [0.0] * 60}
        # Raw counts of the last ten judged minutes: their median follows a sustained rise
        # (a ramp of many different accounts) within minutes, a one-minute spike not at all.
        self._recent: dict[str, deque[int]] = {"start": deque(maxlen=10),
                                               "stop": deque(maxlen=10)}
        self._minutes = 0
        self._done = -1  # last minute whose stops were judged
        self._groups: dict[str, _Sync] = {}
        self._group_of: dict[str, str] = {}
        # account -> complex(start minute, stop minute) of its previous run, for a few hours:
        # a run that starts or stops a whole cron period after the previous one is a timer's.
        # (A complex is two float64 in 32 bytes; a tuple of two ints was 112.)
        self._prev: dict[str, complex] = {}
        self._prune_at = 0

    # -- River contract --------------------------------------------------------------------

    def learn_one(self, x: dict[str, Any]) -> None:
        aid = x["account_id"]
        ts = float(x["ts"])
        m = int(ts // 60.0)
        if m not in _MINUTES:
            return
        first = float(x.get("first_ts", ts))
        last = float(x.get("last_ts", first))
        rec = self._run.get(aid)
        if rec is not None:
            r_start, r_last, r_first, r_lastts = _RUN.unpack_from(rec)
            run_last = int(r_last)
            if m - run_last <= self.gap_minutes:
                if m > run_last:
                    self._run[aid] = (_RUN.pack(r_start, m, r_first, max(r_lastts, last))
                                      + rec[_RUN.size:])
                    self._by_last.setdefault(m, []).append(aid)
                    self._left(run_last)  # its entry there is now stale
                else:
                    self._run[aid] = (_RUN.pack(r_start, run_last, r_first,
                                                max(r_lastts, last)) + rec[_RUN.size:])
                return
        self._run[aid] = _RUN.pack(m, m, first, last) + _pack_ids(x.get("org"),
                                                                   x.get("payment"))
        self._by_last.setdefault(m, []).append(aid)
        if rec is not None:
            # Its stop was never judged (no window closed in between): replaced.
            self._left(run_last)
        prev = self._prev.get(aid)
        if prev is None or (m - int(prev.real)) not in _CRON_PERIODS:
            self._starts.setdefault(m, []).append(aid)

    def _left(self, minute: int) -> None:
        """An entry of ``minute``'s list went stale (its run grew on or was replaced);
        compact the list once more than half of it is (amortised O(1); an account active
        every minute would otherwise sit in each of the ``gap_minutes`` lists not yet
        judged)."""
        filed = self._by_last.get(minute)
        if filed is None:
            return
        n = self._stale.get(minute, 0) + 1
        if 2 * n > len(filed):
            run, unpack = self._run, _RUN.unpack_from
            self._by_last[minute] = [
                a for a in dict.fromkeys(filed)
                if (rec := run.get(a)) is not None and int(unpack(rec)[1]) == minute]
            n = 0
        self._stale[minute] = n

    def score_one(self, x: dict[str, Any]) -> float:
        """The account's support: sync minutes it shared with its group (0 if none)."""
        gid = self._group_of.get(x["account_id"])
        g = self._groups.get(gid) if gid is not None else None
        return float(g.support.get(x["account_id"], 0)) if g is not None else 0.0

    # -- per closed minute -----------------------------------------------------------------

    def end_window(self, start: float, end: float) -> list[Finding]:
        """Judge the runs that started in this minute and those that stopped
        ``gap_minutes`` ago; return findings for the groups that are live."""
        m = int(start // 60.0)
        run = self._run
        for s in sorted(s for s in self._starts if s <= m):
            started = self._starts.pop(s)
            self._judge("start", s, [(_RUN.unpack_from(run[a])[2], a)
                                     for a in started if a in run])
        first = self._done + 1 if self._done >= 0 else m - self.gap_minutes
        unpack = _RUN.unpack_from
        for s in range(max(first, m - self.gap_minutes - 1440), m - self.gap_minutes + 1):
            # The runs whose last minute is still s (see _by_last for the stale entries).
            self._stale.pop(s, None)
            stopped = {a for a in self._by_last.pop(s, ())
                       if (rec := run.get(a)) is not None and int(unpack(rec)[1]) == s}
            prev = self._prev
            timed = sorted((unpack(run[a])[3], a) for a in stopped
                           if a not in prev or (s - int(prev[a].imag)) not in _CRON_PERIODS)
            self._judge("stop", s, timed)
            for a in stopped:
                # Its org and payment stay with the group (if any) that this stop joined.
                prev[a] = complex(unpack(run.pop(a))[0], s)
        self._done = max(self._done, m - self.gap_minutes)
        self._minutes += 1
        out = [self._finding(g, start, end) for g in self._groups.values()
               if end - g.last_ts <= self.hold_s and self._reportable(g)]
        self._expire(end)
        return out

    def _expected(self, kind: str, minute: int) -> float:
        recent = self._recent[kind]
        med = sorted(recent)[len(recent) // 2] if len(recent) >= 5 else 0.0
        return max(self._rate[kind], self._hourly[kind][minute % 60], float(med), 0.5)

    def _judge(self, kind: str, minute: int, timed: list[tuple[float, str]]) -> None:
        k = len(timed)
        lam = self._expected(kind, minute)
        if self._minutes >= self.warmup_minutes and k >= self.min_token:
            log10p = poisson_tail_log10(k, lam)
            if log10p <= -self.mild_log10:
                self._sync(kind, minute, _core(timed, k - lam), k, lam, log10p)
        self._recent[kind].append(k)
        # Learn the rate with the spike clipped: a group must not hide its next session.
        c = min(float(k), lam + 3.0 * math.sqrt(lam) + 1.0)
        self._rate[kind] += 0.05 * (c - self._rate[kind])
        h = self._hourly[kind]
        h[minute % 60] += 0.3 * (c - h[minute % 60])

    def _sync(self, kind: str, minute: int, accounts: list[str], k: int, lam: float,
              log10p: float) -> None:
        votes: dict[str, int] = {}
        for a in accounts:
            gid = self._group_of.get(a)
            if gid is not None and gid in self._groups:
                votes[gid] = votes.get(gid, 0) + 1
        best = max(votes.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        ts = minute * 60.0
        g = None
        overlap: dict[str, Any] = {}
        evidence = log10p
        if best is not None and best[1] >= 0.3 * len(accounts):
            cand = self._groups[best[0]]
            # Random accounts drawn from the recently active ones would share this many
            # members with the group.
            active = max(len(self._run) + len(self._prev), len(cand.support) + len(accounts))
            expected = len(accounts) * len(cand.support) / active
            ov = poisson_tail_log10(best[1], expected)
            # Joint chance: this minute's count and its overlap with the group.
            if ov <= -self.mild_log10 or log10p + min(ov, 0.0) <= -self.sync_log10:
                g = cand
                evidence = min(ov, log10p)
                overlap = {"overlap": best[1], "overlap_expected": round(expected, 2),
                           "overlap_log10_chance": round(ov, 1)}
        if g is None:
            gid = f"lockstep-{int(ts)}"
            g = self._groups.get(gid)
            if g is None:
                g = self._groups[gid] = _Sync(gid, ts)
        else:
            # A candidate founded by part of one session (its start split over two minutes)
            # is the same group when this minute brings most of its own accounts along.
            for gid, v in votes.items():
                h = self._groups.get(gid)
                if h is None or h is g or h.reported:
                    continue
                own = sum(1 for a in h.support if self._group_of.get(a) == gid)
                if v >= 0.5 * own:
                    self._absorb(g, h)
        for a in accounts:
            g.support[a] = g.support.get(a, 0) + 1
            self._group_of.setdefault(a, g.gid)
            rec = self._run.get(a)
            if rec is not None:
                org, pay = _unpack_ids(rec)
                if org is not None:
                    g.orgs[a] = org
                if pay is not None:
                    g.pays[a] = pay
        g.last_ts = max(g.last_ts, ts)
        g.n_minutes += 1
        g.days.add(minute // 1440)
        if g.n_minutes == 1:
            g.first_log10 = log10p
        g.log10_chance += evidence
        g.minutes.append({"signal": f"{kind} minute", "minute_ts": ts, "observed": k,
                          "expected": round(lam, 2), "log10_chance": round(log10p, 1),
                          "core_accounts": len(accounts), **overlap})
        del g.minutes[:-5]

    def _absorb(self, g: _Sync, h: _Sync) -> None:
        """Fold candidate group ``h`` into ``g`` (its chance is not added: it was founded by
        part of a session ``g`` already counts)."""
        for a, c in h.support.items():
            g.support[a] = g.support.get(a, 0) + c
            if self._group_of.get(a) == h.gid:
                self._group_of[a] = g.gid
        g.orgs.update(h.orgs)
        g.pays.update(h.pays)
        g.n_minutes += h.n_minutes
        g.days |= h.days
        g.last_ts = max(g.last_ts, h.last_ts)
        g.minutes = sorted(g.minutes + h.minutes, key=lambda m: m["minute_ts"])[-5:]
        del self._groups[h.gid]

    def _members(self, g: _Sync) -> list[str]:
        # Everyone of a founding minute that is proof by itself (found early, a few chance
        # co-starters included); otherwise, and from the third sync minute on, only the
        # accounts that recurred: in two sync minutes, and in a fifth of them once the group
        # has many (over weeks, a background account lands in two by chance).
        strong = g.n_minutes < 3 and g.first_log10 <= -self.early_log10
        need = 1 if strong else max(2, math.ceil(0.2 * g.n_minutes))
        return sorted((a for a, s in g.support.items() if s >= need),
                      key=lambda a: (-g.support[a], a))

    def _reportable(self, g: _Sync) -> bool:
        members = self._members(g)
        if len(members) < self.min_members:
            return False
        if g.log10_chance > -self.early_log10:
            return False
        orgs = {g.orgs[a] for a in members if a in g.orgs}
        # Members without a declared org count as their own.
        n_orgs = len(orgs) + sum(1 for a in members if a not in g.orgs)
        return n_orgs >= self.min_org_share * len(members)

    def _finding(self, g: _Sync, start: float, end: float) -> Finding:
        g.reported = True
        members = self._members(g)
        n = len(members)
        orgs = {g.orgs[a] for a in members if a in g.orgs}
        pays = {g.pays[a] for a in members if a in g.pays}
        critical = n >= self.critical_members and len(g.days) >= self.critical_days
        score = -g.log10_chance
        return Finding(
            entity_type="cluster",
            entity_id=g.gid,
            detector="coactivity_lockstep",
            window_start=start,
            window_end=end,
            score=round(score, 1),
            threshold=self.early_log10,
            severity="critical" if critical else "warning",
            member_count=n,
            members=members[: self.max_members],
            member_orgs={a: g.orgs[a] for a in members[: self.max_members] if a in g.orgs},
            evidence={
                "features": {
                    "members": n,
                    "sync_minutes": g.n_minutes,
                    "days": len(g.days),
                    "distinct_orgs": len(orgs),
                    "distinct_payments": len(pays),
                    "median_support": g.support[members[n // 2]] if n else 0,
                },
                "baseline": {"sync_minute_log10_chance": -self.mild_log10,
                             "report_log10_chance": -self.early_log10,
                             "combined_log10_chance": round(g.log10_chance, 1)},
                "score": round(score, 1),
                "threshold": self.early_log10,
                "signals": list(reversed(g.minutes)),
            },
        )

    def _expire(self, now: float) -> None:
        m = int(now // 60.0)
        if m >= self._prune_at:
            self._prune_at = m + 60
            self._prev = {a: p for a, p in self._prev.items()
                          if m - int(p.imag) <= _PREV_MINUTES}
        cutoff = now - self.horizon_s
        for gid in [gid for gid, g in self._groups.items() if g.last_ts < cutoff]:
            for a in self._groups.pop(gid).support:
                if self._group_of.get(a) == gid:
                    del self._group_of[a]

    @property
    def tracked(self) -> dict[str, int]:
        """Sizes of the state (for metrics and memory tests)."""
        return {"in_run": len(self._run), "recent_runs": len(self._prev),
                "groups": len(self._groups), "grouped": len(self._group_of)}


def _core(timed: list[tuple[float, str]], excess: float) -> list[str]:
    """The accounts of a sync minute that are in step: the tightest span of request times
    holding the excess over chance (accounts that landed in the minute by chance are spread
    over all of it; a scheduler's are within its jitter).

    >>> _core([(0.5, "x"), (20.0, "a"), (21.0, "b"), (22.5, "c"), (50.0, "y")], 3)
    ['a', 'b', 'c']
    """
    timed = sorted(timed)
    need = max(2, min(len(timed), math.ceil(excess)))
    best = min(range(len(timed) - need + 1), key=lambda i: timed[i + need - 1][0] - timed[i][0])
    lo, hi = timed[best][0] - 1.0, timed[best + need - 1][0] + 1.0
    return [a for t, a in timed if lo <= t <= hi]

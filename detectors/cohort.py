"""Young accounts judged from their window, their signup cohort and the keys they share.

A throwaway account (signup farming) sends a handful of requests in its whole life: it never
builds the long-run profile that account baselines need. What gives it away is what it
shares with other young accounts in the same days: a card used by a small cell of
accounts, a proxy /24, a signup hour on the same hosting ASN, a prompt template — while the
accounts come from many orgs. :class:`CohortDetector` keeps, for a sliding horizon, the
young accounts whose few requests look like harvesting (single-turn, cut at ``max_tokens``
or very long), links them through such keys (union-find) and reports a linked group once it
has ``min_members`` accounts from enough distinct orgs.

Benign look-alikes stay out for distinct reasons: a class or an SSO roll-out is one org
(org diversity), its members chat (multi-turn, ordinary answers: not suspects); a popular
app's template is mostly sent by established users (a key whose accounts are mostly old
links nobody).

State: per young suspect account (only those, only within the horizon) a small record —
requests, harvest-like requests, org, first/last time, its group root; per link key the
young suspects seen on it, capped at ``max_key_members``, and a capped count of the old
accounts using it. Everything older than ``horizon_s`` is dropped at window close.

Examples
--------
>>> det = CohortDetector(min_members=3)
>>> def young(i):
...     return {"account_id": f"a{i}", "ts": 600.0 * i, "age_days": 0.2, "org": f"o{i}",
...             "requests": 4, "harvest_like": 4, "keys": ["pay:card-1", f"ip24:10.0.{i}"]}
>>> round(det.score_one(young(0)), 3)  # alone: harvest-like, but linked to nobody yet
0.267
>>> for i in range(3):
...     det.learn_one(young(i))
>>> round(det.score_one(young(3)), 3)  # its card links it to three more
0.8
>>> det.learn_one(young(3))
>>> [(f.entity_id, f.member_count, f.severity) for f in det.end_window(1800.0, 1860.0)]
[('swarm-a0', 4, 'warning')]
>>> old = {"account_id": "z", "ts": 0.0, "age_days": 400.0, "requests": 9, "harvest_like": 9,
...        "keys": ["pay:card-1"]}
>>> det.score_one(old)  # established accounts are not this detector's business
0.0
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

from detectors.findings import Finding
from detectors.keys import cluster_keys, key_label
from detectors.windows import AccountWindow

__all__ = ["LINK_KINDS", "CohortDetector", "account_view", "link_labels", "template_bands"]

#: Key kinds that can link young accounts: shared by a small operator, rarely by strangers.
#: Plain ASN and user agent are too coarse; org is the benign case (one customer).
LINK_KINDS = frozenset({"pay", "ip24", "cohort", "tplb"})
#: ``kind:`` of each of LINK_KINDS, sorted (learn_one filters key labels with them).
_LINK_PREFIXES: tuple[str, ...] = tuple(sorted(f"{k}:" for k in LINK_KINDS))


def link_labels(labels: Iterable[str]) -> list[str]:
    """The labels whose kind (the text before the first ``:``, or the whole label without
    one) is in :data:`LINK_KINDS`, in order.

    >>> link_labels(["asn:1", "pay:c", "tplb:0:0000ff", "pay", "payx:1", "ip24:1:2"])
    ['pay:c', 'tplb:0:0000ff', 'pay', 'ip24:1:2']
    """
    # One C prefix test per label rather than a split and a set lookup (every
    # account-window's keys pass here).
    return [k for k in labels if k.startswith(_LINK_PREFIXES) or k in LINK_KINDS]


def template_bands(fp: str) -> list[str]:
    """LSH bands of a 64-bit prompt SimHash (21, 21 and 22 bits): two prompts of one template
    (a few bits apart) agree on a whole band when the flipped bits miss it, which happens
    for most of an account's prompts; two unrelated prompts agree on a band about once in
    two million, so a band stays a rare key even among many accounts.

    >>> template_bands("00000000000000ff")
    ['tplb:0:000000', 'tplb:1:000000', 'tplb:2:0000ff']
    """
    try:
        v = int(fp, 16)
    except ValueError:
        return []
    # Unrolled (bits 64..43, 43..22, 22..0): every account-window's prompts pass here.
    # printf-style: a fifth faster than f-strings with a format spec, the same text.
    return ["tplb:0:%06x" % ((v >> 43) & 0x1FFFFF), "tplb:1:%06x" % ((v >> 22) & 0x1FFFFF),
            "tplb:2:%06x" % (v & 0x3FFFFF)]


def account_view(
    account_id: str, acc: AccountWindow, ts: float, links: list[str] | None = None
) -> dict[str, Any]:
    """The dict :class:`CohortDetector` and :class:`~detectors.coactivity.CoactivityDetector`
    read for one account-window: age, org, payment, counts and link keys. ``links``: the
    labels of its link keys when the caller has them already
    (:attr:`~detectors.keys.LabelledKeys.links`)."""
    ev = acc.last_event
    keys: list[str] = []
    age = math.nan
    org = pay = None
    if ev is not None:
        if links is not None:
            keys.extend(links)
        else:
            for k in cluster_keys(ev):
                if k[0] in LINK_KINDS:
                    keys.append(key_label(k))
        if ev.account_created_ts is not None:
            age = max(0.0, (acc.last_ts - ev.account_created_ts) / 86400.0)
        org, pay = ev.org_id, ev.payment_fingerprint
    fps = acc.fps
    if fps:
        for fp in fps[:4]:
            keys += template_bands(fp)
    return {
        "account_id": account_id,
        "ts": ts,
        "age_days": age,
        "org": org,
        "payment": pay,
        "first_ts": acc.first_ts,
        "last_ts": acc.last_ts,
        "requests": acc.requests,
        "harvest_like": acc.harvest_like,
        "keys": keys,
    }


@dataclass(slots=True)
class _Young:
    requests: int = 0
    harvest: int = 0
    age_days: float = math.nan  # at its latest window
    org: str | None = None
    first_ts: float = 0.0
    last_ts: float = 0.0
    # Insertion-ordered (a dict, not a set): the order keys link accounts decides which key
    # a union credits, and a set's order depends on the process's hash seed, so a worker and
    # replay (or two replays) would report different evidence. None until it is a suspect
    # (most young accounts never are): an empty dict is 64 bytes.
    keys: dict[str, None] | None = None
    # Whether it has been registered on all of ``keys`` as a suspect; from then on only each
    # window's own keys need linking (a long-lived account has thousands of prompt bands).
    registered: bool = False
    # Group root (or lone account) -> the one prompt band it shares with this account so
    # far: a single band is no link, a second distinct one is (see ``CohortDetector._band``).
    # None until the first such band.
    bands: dict[str, str] | None = None


@dataclass(slots=True)
class _Key:
    # The label object ``_keys`` is keyed by: accounts' own key dicts hold this one object
    # rather than the equal copy each window builds (prompt bands are rebuilt per window,
    # and the copies were a sixth of the detector's state).
    label: str = ""
    # Young suspects on the key, in order of first arrival. A list, not a dict: only
    # membership and order are read, and most keys hold one to three members (a one-entry
    # dict is 184 bytes, a one-entry list 64). At most ``max_key_members``, so a membership
    # test is a short scan.
    members: list[str] = field(default_factory=list)
    # Capped sample of old accounts; None while there is none (an empty set is 216 bytes,
    # and most keys are only ever used by young accounts).
    old: set[str] | None = None
    last_ts: float = 0.0
    # Every member is in one union-find group: a new suspect needs one union through this
    # key, not one per member (a campaign's card or /24 holds up to max_key_members).
    one_group: bool = False


@dataclass(slots=True)
class _Group:
    gid: str
    first_ts: float
    members: dict[str, float] = field(default_factory=dict)  # account -> joined ts
    orgs: set[str] = field(default_factory=set)
    last_join: float = 0.0
    keys: dict[str, int] = field(default_factory=dict)  # link key -> members via it
    reported: bool = False
    # (joined ts, member) in finding order, built at the group's first finding and then
    # only extended by unions: a reported swarm of thousands is listed every window, and
    # re-sorting all its members each time cost more than the rest of the detector.
    order: list[tuple[float, str]] | None = None
    order_sorted: bool = True


class CohortDetector:
    """Swarms of young accounts from per-window evidence (River manners: ``learn_one`` /
    ``score_one`` on plain dicts; groups come out of :meth:`end_window` as findings).

    Parameters
    ----------
    young_days
        Accounts younger than this (at their window) are judged here; older ones only tell
        the detector which keys established customers use.
    harvest_min
        Shrunk share of harvest-like requests, ``harvest / (requests + 1)``, above which a
        young account is a suspect. The +1 keeps a single long answer from making anyone a
        suspect; a throwaway account with 2 of 2 or 3 of 4 harvest-like requests is one.
    join_min
        A weaker bar for joining a group that is already reported through a link key: the
        swarm's accounts with one unlucky short answer still count.
    min_members
        Linked suspects needed before a group is reported.
    min_org_share
        Distinct orgs over members needed: one org's class or roll-out is not a swarm.
    max_old_share
        A key more than this share of whose accounts are established (a popular app's
        template, a big company's egress) links nobody.
    horizon_s
        How long young accounts, keys and groups are remembered after their last activity.
    hold_s
        A group keeps being reported this long after its last new member: one alert for a
        campaign that sends a wave a day, not one per wave.
    critical_members
        Members from which a group's finding is critical.
    max_key_members, max_members
        Caps on the members kept per key and listed per finding.
    fresh_days
        Accounts younger than this are throwaways with a handful of prompts: one shared
        prompt band links two of them. Any older account needs a second distinct band shared
        with the same group (its thousands of prompts make one band a likely coincidence).
    max_account_keys
        Cap on the link keys remembered per young account (its first ones; once it is a
        registered suspect each window links through its own keys). Keys it joined beyond
        the cap lose it when they expire rather than when it does.
    """

    def __init__(
        self,
        young_days: float = 2.0,
        harvest_min: float = 0.5,
        join_min: float = 0.3,
        min_members: int = 5,
        min_org_share: float = 0.5,
        max_old_share: float = 0.5,
        horizon_s: float = 2 * 86400.0,
        hold_s: float = 2 * 86400.0,
        critical_members: int = 30,
        max_key_members: int = 256,
        max_account_keys: int = 64,
        max_members: int = 10_000,
        fresh_days: float = 2.0,
    ) -> None:
        self.young_days = young_days
        self.harvest_min = harvest_min
        self.join_min = join_min
        self.min_members = min_members
        self.min_org_share = min_org_share
        self.max_old_share = max_old_share
        self.horizon_s = horizon_s
        self.hold_s = hold_s
        self.critical_members = critical_members
        self.max_key_members = max_key_members
        self.max_account_keys = max_account_keys
        self.max_members = max_members
        self.fresh_days = fresh_days
        self._young: dict[str, _Young] = {}
        self._keys: dict[str, _Key] = {}
        self._parent: dict[str, str] = {}  # union-find over suspects; roots own groups
        self._groups: dict[str, _Group] = {}
        self._now = -math.inf
        # Set when an account-window arrives older than one already learnt (only callers
        # other than the pipeline do that): expiry then re-sorts by last activity first.
        self._unordered = False

    # -- River contract --------------------------------------------------------------------

    def _is_young(self, x: dict[str, Any]) -> bool:
        age = x.get("age_days", math.nan)
        return age == age and age < self.young_days

    def _evidence(self, x: dict[str, Any]) -> float:
        rec = self._young.get(x["account_id"])
        n = int(x.get("requests", 0)) + (rec.requests if rec else 0)
        h = int(x.get("harvest_like", 0)) + (rec.harvest if rec else 0)
        return h / (n + 1.0)

    def score_one(self, x: dict[str, Any]) -> float:
        """How swarm-like this young account is, 0..1: its harvest evidence, times how far
        its group is towards ``min_members`` (0 for established accounts)."""
        if not self._is_young(x):
            return 0.0
        e = self._evidence(x)
        aid = x["account_id"]
        size = 0
        if aid in self._parent:
            g = self._groups.get(self._find(aid))
            size = len(g.members) if g else 0
        else:
            size = 1 + max(
                (len(self._keys[k].members) for k in x.get("keys", ()) if k in self._keys
                 and self._usable(self._keys[k])), default=0,
            )
        return e * min(1.0, size / self.min_members)

    def learn_one(self, x: dict[str, Any]) -> None:
        aid = x["account_id"]
        ts = float(x.get("ts", 0.0))
        if ts < self._now:
            self._unordered = True
        self._now = max(self._now, ts)
        if not self._is_young(x):
            # Established users of a key: only keys a young suspect already brought in.
            # Unfiltered: every key in ``_keys`` is a link label, and a label's text says
            # its kind, so any other label misses there just the same (most account-windows
            # take this path, and most find nothing).
            key_stats = self._keys
            if key_stats:
                for stat in map(key_stats.get, x.get("keys", ())):
                    if stat is not None:
                        old = stat.old
                        if old is None:
                            old = stat.old = set()
                        if len(old) < self.max_key_members:
                            old.add(aid)
            return
        keys = link_labels(x.get("keys", ()))
        young = self._young
        rec = young.get(aid)
        if rec is None:
            rec = young[aid] = _Young(first_ts=ts)
        elif rec.last_ts != ts:
            # Re-inserted: ``_young`` stays in order of last activity (windows close in
            # time order), so expiry stops at the first account still inside the horizon.
            del young[aid]
            young[aid] = rec
        rec.requests += int(x.get("requests", 0))
        rec.harvest += int(x.get("harvest_like", 0))
        rec.last_ts = ts
        rec.age_days = float(x.get("age_days", math.nan))
        if x.get("org") is not None:
            rec.org = x["org"]
        e = rec.harvest / (rec.requests + 1.0)
        if e <= self.join_min:
            # No keys kept for an account that is no suspect (most young accounts chat):
            # its card, /24 and cohort recur in every window it sends, should it become one.
            return
        own = rec.keys
        if own is None:
            own = rec.keys = {}
        key_stats = self._keys
        for k in keys:
            # Capped: an account older than a throwaway sends many prompts, each with its
            # own bands; the first keys are the ones that link it before it is a suspect.
            if len(own) >= self.max_account_keys:
                break
            if k not in own:
                # The key's shared label object, if it has one, not this window's copy.
                stat = key_stats.get(k)
                own[k if stat is None else stat.label] = None
        linked: list[tuple[str, str]] = []
        # One link per other account, its first key: a second key to the same account would
        # find both in one group already (a no-op union), and an operator's accounts share
        # a card, a /24, a cohort and template bands, so that was most of the work.
        seen: set[str] = {aid}
        strong = e > self.harvest_min
        parent = self._parent
        grouped: list[_Key] = []
        own_root = self._find(aid) if aid in parent else aid
        for k in (keys if rec.registered else own):
            stat = key_stats.get(k)
            if stat is None:
                stat = key_stats[k] = _Key(label=k)
            else:
                # The shared label (bands and group evidence keep it; re-inserting under
                # this window's copy would orphan ``label`` from the dict's own key).
                k = stat.label
                if stat.last_ts != ts:
                    # Same as ``_young``: keys stay in order of last use.
                    del key_stats[k]
                    key_stats[k] = stat
            stat.last_ts = ts
            if aid not in stat.members and len(stat.members) >= self.max_key_members:
                continue
            if self._usable(stat):
                band = k.startswith("tplb:")
                unlinked = False  # a member this key alone does not link aid to
                if strong and stat.one_group:
                    # Its members are one group already: any one of them reaches it (the
                    # same merges as linking to all, at a fraction of the unions).
                    m = next((m for m in stat.members if m != aid), None)
                    if m is not None and m not in seen:
                        if not band or self._band(aid, rec, own_root, m, k):
                            seen.add(m)
                            linked.append((m, k))
                        else:
                            unlinked = True
                else:
                    for m in stat.members:
                        if m not in seen:
                            if not band or self._band(aid, rec, own_root, m, k):
                                seen.add(m)
                                linked.append((m, k))
                            else:
                                unlinked = True
                if unlinked:
                    stat.one_group = False
                elif strong and (stat.one_group or all(m in parent for m in stat.members)):
                    grouped.append(stat)
            elif strong and aid not in stat.members:
                stat.one_group = False  # a member that links nobody through it
            if strong and aid not in stat.members:
                stat.members.append(aid)
        if strong:
            rec.registered = True
            self._join(aid, rec, ts)
            for other, k in linked:
                self._union(aid, other, k, ts)
            for stat in grouped:
                stat.one_group = True
        else:
            # A weak suspect joins only a group that is already reported.
            for other, k in linked:
                if other in self._parent:
                    g = self._groups.get(self._find(other))
                    if g is not None and g.reported:
                        self._join(aid, rec, ts)
                        self._union(other, aid, k, ts)
                        break

    # -- groups ----------------------------------------------------------------------------

    def _band(self, aid: str, rec: _Young, own_root: str, m: str, k: str) -> bool:
        """Whether prompt band ``k``, shared with ``m``, links ``aid`` to ``m``'s group.

        One band is a 21-bit coincidence: rare between two throwaways (both younger than
        ``fresh_days``) with a handful of prompts, so it links them (a swarm's first wave is
        linked by its template within minutes). But an account younger than 30 days may send
        thousands of prompts over days, three bands each, and the chance of a match grows
        with the product of the two accounts' prompts: a young harvester and a long-lived
        swarm meet on one band by chance (campaign_slow_ramp at 35 h). Once either account
        is older, two distinct bands shared with the same group are needed: two independent
        coincidences (about the square of one) or, far more likely, one template, whose
        accounts share many. The first band is remembered on both sides, so the second can
        come from either account. A hit noted against a group that has since merged into
        another is forgotten: a later link, never a false one."""
        parent = self._parent
        root = self._find(m) if m in parent else m
        if root == own_root:
            return True  # one group already (the union is a no-op)
        other = self._young.get(m)
        if (other is not None and rec.age_days < self.fresh_days
                and other.age_days < self.fresh_days):
            return True
        bands = rec.bands
        first = bands.get(root) if bands is not None else None
        if first is not None and first != k:
            del bands[root]
            return True
        if other is not None:
            other_bands = other.bands
            other_first = other_bands.get(own_root) if other_bands is not None else None
            if other_first is not None and other_first != k:
                del other_bands[own_root]
                return True
            if other_bands is None:
                other_bands = other.bands = {}
            if len(other_bands) < self.max_account_keys:
                other_bands.setdefault(own_root, k)
        if bands is None:
            bands = rec.bands = {}
        if len(bands) < self.max_account_keys:
            bands.setdefault(root, k)
        return False

    def _usable(self, stat: _Key) -> bool:
        n_old = len(stat.old) if stat.old is not None else 0
        return n_old <= self.max_old_share * (n_old + len(stat.members))

    def _find(self, a: str) -> str:
        parent = self._parent
        while (p := parent[a]) != a:
            parent[a] = parent[p]
            a = parent[a]
        return a

    def _join(self, aid: str, rec: _Young, ts: float) -> None:
        if aid in self._parent:
            return
        self._parent[aid] = aid
        g = self._groups[aid] = _Group(gid=_gid(aid), first_ts=ts, last_join=ts)
        g.members[aid] = ts
        if rec.org is not None:
            g.orgs.add(rec.org)

    def _union(self, a: str, b: str, key: str, ts: float) -> None:
        if b not in self._parent:
            return
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._merge(ra, rb, key, ts)

    def _merge(self, ra: str, rb: str, key: str, ts: float) -> str:
        """Merge the groups of two distinct roots, crediting ``key``; the surviving root."""
        ga, gb = self._groups[ra], self._groups[rb]
        # The older group survives: its id (and alert) keeps growing.
        if (gb.first_ts, gb.gid) < (ga.first_ts, ga.gid):
            ra, rb, ga, gb = rb, ra, gb, ga
        self._parent[rb] = ra
        members = ga.members
        order = ga.order
        for m, t in gb.members.items():
            if m not in members:
                members[m] = t
                if order is not None:
                    order.append((t, m))
        if order is not None:
            ga.order_sorted = False
        ga.orgs |= gb.orgs
        for k, c in gb.keys.items():
            ga.keys[k] = ga.keys.get(k, 0) + c
        ga.keys[key] = ga.keys.get(key, 0) + 1
        ga.last_join = max(ga.last_join, gb.last_join, ts)
        ga.reported = ga.reported or gb.reported
        del self._groups[rb]
        return ra

    def _reportable(self, g: _Group) -> bool:
        n = len(g.members)
        return n >= self.min_members and len(g.orgs) >= self.min_org_share * n

    def end_window(self, start: float, end: float) -> list[Finding]:
        """Findings for every reportable group still gaining members (within ``hold_s``),
        then forget what left the horizon."""
        out = []
        for g in self._groups.values():
            if end - g.last_join > self.hold_s or not self._reportable(g):
                continue
            g.reported = True
            out.append(self._finding(g, start, end))
        self._expire(end)
        return out

    def _finding(self, g: _Group, start: float, end: float) -> Finding:
        n = len(g.members)
        order = g.order
        if order is None:
            order = g.order = sorted([(t, m) for m, t in g.members.items()])
        elif not g.order_sorted:
            order.sort()  # a sorted run plus the few joined since: close to linear
        g.order_sorted = True
        members = [m for _, m in order[: self.max_members]]
        young = self._young
        req = harvest = n_recs = 0
        member_orgs: dict[str, str] = {}
        for m in members:
            r = young.get(m)
            if r is None:
                continue
            n_recs += 1
            req += r.requests
            harvest += r.harvest
            if r.org:
                member_orgs[m] = r.org
        span_h = (order[-1][0] - g.first_ts) / 3600.0
        top = sorted(g.keys.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        score = n / self.min_members
        return Finding(
            entity_type="cluster",
            entity_id=g.gid,
            detector="cohort_swarm",
            window_start=start,
            window_end=end,
            score=round(score, 3),
            threshold=1.0,
            severity="critical" if n >= self.critical_members else "warning",
            member_count=n,
            members=members,
            # The policy's org allowlist matches on these: without them an allowlisted
            # customer's accounts in a swarm alert would be suspended.
            member_orgs=member_orgs,
            evidence={
                "features": {
                    "young_members": n,
                    "distinct_orgs": len(g.orgs),
                    "requests_per_member": round(req / max(n_recs, 1), 2),
                    "harvest_like_share": round(harvest / max(req, 1), 3),
                    "active_span_h": round(span_h, 2),
                },
                "baseline": {"min_members": self.min_members,
                             "min_org_share": self.min_org_share},
                "score": round(score, 3),
                "threshold": 1.0,
                "signals": [{"signal": f"shared {k}", "score": c} for k, c in top],
            },
        )

    def _expire(self, now: float) -> None:
        cutoff = now - self.horizon_s
        if self._unordered:
            self._unordered = False
            self._young = dict(sorted(self._young.items(), key=lambda kv: kv[1].last_ts))
            self._keys = dict(sorted(self._keys.items(), key=lambda kv: kv[1].last_ts))
        # Both dicts are in order of last activity (see learn_one): the expired ones lead.
        gone = list(takewhile(lambda a: self._young[a].last_ts < cutoff, self._young))
        for a in gone:
            for k in self._young.pop(a).keys or ():
                stat = self._keys.get(k)
                if stat is not None and a in stat.members:
                    stat.members.remove(a)
        keys = self._keys
        for k in list(takewhile(lambda k: keys[k].last_ts < cutoff, keys)):
            del keys[k]
        # A group dies with its last join; its members leave the union-find with it (every
        # member of a component is listed in its root's group).
        dead = [r for r, g in self._groups.items() if g.last_join < cutoff]
        for r in dead:
            for m in self._groups.pop(r).members:
                self._parent.pop(m, None)
        if dead:
            # Their members may still sit on keys, now in no group.
            for stat in self._keys.values():
                stat.one_group = False

    @property
    def tracked(self) -> dict[str, int]:
        """Sizes of the state (for metrics and memory tests)."""
        return {"young": len(self._young), "keys": len(self._keys),
                "groups": len(self._groups), "linked": len(self._parent)}


def _gid(account_id: str) -> str:
    """Group id from its founding account: stable across replays and workers."""
    if len(account_id) <= 24 and account_id.isascii():
        return f"swarm-{account_id}"
    return "swarm-" + hashlib.sha1(account_id.encode(), usedforsecurity=False).hexdigest()[:16]

"""Campaign assembly: where every flagged key is seen, so campaigns are whole.

Fed with the window-total records of every key partition (:mod:`detectors.keycount`): per
window, the running totals of the keys suspects touched and the suspects' summaries. A
window is assembled once every key partition's watermark has passed it, so the result
depends on event time only, never on how many workers ran the stages before or how fast.
Per window, in account-id order (as the single-process pipeline always did): template
discovery on the suspects' fingerprints (:class:`~detectors.templates.TemplateIndex`),
the suspects into :class:`~detectors.clusters.ClusterDetector` (per-key suspicious members,
key baselines, campaigns with stable ids, members and harvest totals), template founders,
then the window's campaign findings.

Examples
--------
>>> asm = CampaignAssembly(window_s=60, cluster_min_members=5)
>>> found = []
>>> for minute in range(12):
...     susp = [{"a": f"h{minute % 6}-{i}", "w": minute * 60.0, "k": [["pay", "card-1"]],
...              "x": 0.8, "y": True, "r": True, "n": 1, "o": 2000, "g": None,
...              "m": {"m": 1}, "f": []} for i in range(10)]
...     _ = asm.add({"t": "wt", "w": minute * 60.0, "p": 0, "keys": [["pay:card-1", 10]],
...              "susp": susp})
...     asm.watermark(0, minute * 60.0 + 60, parts=1)
...     found += asm.close()
>>> found[0].detector, found[0].entity_id, found[-1].member_count
('cluster_campaign', 'cmp-...', 60)
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from detectors.clusters import ClusterDetector
from detectors.findings import Finding
from detectors.fingerprint import fingerprint_int
from detectors.summary import (
    AccountSummary,
    ChunkLedger,
    SummaryFormatError,
    chunk_of,
    group_from_wire,
)
from detectors.templates import TemplateIndex

__all__ = ["CAMPAIGN_DETECTORS", "CampaignAssembly"]

log = logging.getLogger(__name__)

#: Detectors whose findings campaign assembly emits (their alerts follow its watermark):
#: its own, and the swarm groups it passes on when they are no campaign's.
CAMPAIGN_DETECTORS = frozenset({"cluster_campaign", "cluster_model_pivot", "cohort_swarm"})


class Candidate(NamedTuple):
    """What campaign assembly keeps of a template candidate's newest summary: the fields a
    founder found windows later joins its campaign with (issue 16: the whole summary, with
    its keys, models and fingerprints, was ~2 KB per candidate)."""

    account_id: str
    window_start: float
    extraction: float
    young: bool
    regular: bool
    org: str | None

    @classmethod
    def of(cls, s: AccountSummary, prev: Candidate | None = None) -> Candidate:
        """``s`` as a candidate; the id and org strings of ``prev`` (the account's previous
        candidate, when equal) are kept instead of this window's decoded copies."""
        if prev is None:
            return cls(s.account_id, s.window_start, s.extraction, s.young, s.regular, s.org)
        org = prev.org if prev.org == s.org else s.org
        return cls(prev.account_id, s.window_start, s.extraction, s.young, s.regular, org)

    def to_wire(self) -> dict[str, Any]:
        """As a summary on the wire (what snapshots hold), without the fields not kept."""
        return AccountSummary(self.account_id, self.window_start, [], self.extraction,
                              self.young, self.regular, 0, 0, self.org, None, []).to_wire()


class _Pending:
    __slots__ = ("chunks", "first_offset", "groups", "summaries", "totals")

    def __init__(self, offset: int | None) -> None:
        self.first_offset = offset
        self.chunks = ChunkLedger()
        self.totals: dict[str, int] = {}
        self.summaries: dict[str, AccountSummary] = {}
        self.groups: dict[str, Finding] = {}


class CampaignAssembly:
    """Template discovery plus :class:`~detectors.clusters.ClusterDetector`, fed per window.

    Parameters
    ----------
    window_s
        Account window length.
    suspicious, template_min_accounts, template_max_bits, max_members
        As for :class:`~detectors.pipeline.Detection`.
    cluster_*
        The :class:`~detectors.clusters.ClusterDetector` parameters without the prefix
        (``cluster_windows`` keeps its name).
    parts
        Key partitions whose watermarks must pass a window before it is assembled; raised
        when a watermark record names more.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        suspicious: float = 0.5,
        cluster_windows: int = 10,
        cluster_min_members: int = 6,
        cluster_min_share: float = 0.5,
        cluster_min_z: float = 4.0,
        cluster_critical_members: int = 20,
        cluster_critical_young_share: float = 0.5,
        cluster_hold_windows: int = 9,
        cluster_critical_harvest_tokens: float = 50_000_000.0,
        cluster_fold_share: float = 0.5,
        template_min_accounts: int = 4,
        template_max_bits: int = 10,
        max_members: int = 10_000,
        parts: int = 1,
    ) -> None:
        self.window_s = window_s
        self.suspicious = suspicious
        self.parts = parts
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
            critical_harvest_tokens=cluster_critical_harvest_tokens,
            fold_share=cluster_fold_share,
            max_members=max_members,
        )
        self._pending: dict[float, _Pending] = {}
        self._marks: dict[int, float] = {}
        self.boundary = float("-inf")
        # The newest summary of each template candidate of this cluster window: a founder
        # found windows after it was seen joins with what it looked like then.
        self._candidates: dict[str, Candidate] = {}
        self.duplicates = 0
        self.late = 0
        self.rejected = 0
        self.windows = 0
        self.incomplete = 0

    # -- input ---------------------------------------------------------------------------------

    def add(self, rec: dict[str, Any], offset: int | None = None) -> bool:
        """Take one window-total record (checked by :func:`detectors.summary.decode`); False
        when its window was assembled already or its (key partition, chunk) came before. ``offset``
        is the record's position in its topic (see :meth:`committable`)."""
        w = float(rec["w"])
        if w < self.boundary:
            self.late += 1
            return False
        pend = self._pending.get(w)
        if pend is None:
            pend = self._pending[w] = _Pending(offset)
        part = int(rec["p"])
        if not pend.chunks.take(part, *chunk_of(rec)):
            self.duplicates += 1
            return False
        summaries = []
        for d in rec["susp"]:
            # One bad summary costs that summary, not the window of every other account.
            try:
                summaries.append(AccountSummary.from_wire(d))
            except SummaryFormatError as err:
                self.rejected += 1
                log.warning("campaign assembly: summary rejected (%s)", err.reason)
        groups = []
        for d in rec.get("g", ()):
            try:
                groups.append(group_from_wire(d))
            except SummaryFormatError as err:
                self.rejected += 1
                log.warning("campaign assembly: group rejected (%s)", err.reason)
        pend.totals.update((label, n) for label, n in rec["keys"])
        for s in summaries:
            pend.summaries[s.account_id] = s
        for g in groups:
            # Two workers may both report a group (after a rebalance): keep the larger (on a
            # tie, the later member list in sort order), so arrival order never decides.
            old = pend.groups.get(g.entity_id)
            if old is None or _rank(g) > _rank(old):
                pend.groups[g.entity_id] = g
        return True

    def watermark(self, part: int, closed_before: float, *, parts: int | None = None) -> None:
        """Key partition ``part`` closed every window starting before ``closed_before``."""
        if parts is not None and parts > self.parts:
            self.parts = parts
        if closed_before > self._marks.get(part, float("-inf")):
            self._marks[part] = closed_before

    def committable(self, next_offset: int | None) -> int | None:
        """Where a restart from the current state must read again: the first record of the
        oldest window not assembled yet, else ``next_offset``."""
        firsts = [p.first_offset for p in self._pending.values() if p.first_offset is not None]
        return min(firsts) if firsts else next_offset

    # -- assembly ------------------------------------------------------------------------------

    def close(self) -> list[Finding]:
        """Assemble every window all key partitions have passed; return their findings."""
        if len(self._marks) < self.parts:
            return []
        b = min(self._marks.values())
        if b <= self.boundary:
            return []
        self.boundary = b
        out: list[Finding] = []
        for w in sorted(s for s in self._pending if s < b):
            pend = self._pending.pop(w)
            missing = pend.chunks.incomplete()
            if missing:
                self.incomplete += 1
                log.warning("campaign assembly: window %s assembled without all chunks of %d "
                            "key partitions", w, missing)
            out.extend(self._assemble(w, pend))
        return out

    def _assemble(self, start: float, pend: _Pending) -> list[Finding]:
        self.windows += 1
        end = start + self.window_s
        clusters, templates = self.clusters, self.templates
        clusters.set_totals(start, pend.totals.items())
        candidates = self._candidates
        for account_id in sorted(pend.summaries):
            s = pend.summaries[account_id]
            prev = candidates.get(account_id)
            if prev is not None:
                # The id string kept since its first window, not this window's copy.
                account_id = prev.account_id
            keys = list(s.keys)
            seen_groups: set[str] = set()
            for fp in s.fps:
                v = fingerprint_int(fp)
                if v is None:
                    continue
                gid = templates.lookup(v, end)
                if gid is None:
                    templates.add(v, account_id)
                    prev = candidates[account_id] = Candidate.of(s, prev)
                elif gid not in seen_groups:
                    seen_groups.add(gid)
                    keys.append(("tpl", gid))
            if prev is not None:
                candidates[account_id] = Candidate.of(s, prev)
            clusters.observe(
                account_id, keys, extraction=s.extraction, young=s.young, regular=s.regular,
                requests=s.requests, output_tokens=s.output_tokens, org=s.org,
                models=s.models, ts=start, harvester=s.harvester,
            )
        # Template groups founded in this window count their founders right away.
        for account_id, gid in templates.promote(end).items():
            now = pend.summaries.get(account_id)
            s: AccountSummary | Candidate | None = now or candidates.get(account_id)
            if s is None:
                continue
            clusters.observe(
                account_id, [("tpl", gid)], extraction=s.extraction, young=s.young,
                regular=s.regular,
                requests=now.requests if now is not None else 0,
                output_tokens=now.output_tokens if now is not None else 0,
                # Counts were counted in the window that saw them; the org is the account's
                # whatever the window (without it, a customer's own evaluation keys founding
                # a template looked like many orgs: mix's one false campaign alert).
                org=s.org, models=None, ts=start,
            )
        if end % (self.window_s * clusters.cluster_windows) == 0:
            templates.end_window()
            candidates.clear()
        groups = [pend.groups[g] for g in sorted(pend.groups)]
        return clusters.end_window(start, end, groups)


def _rank(g: Finding) -> tuple[int, list[str]]:
    return g.member_count or 0, g.members or []

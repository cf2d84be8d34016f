"""Which independent detectors currently flag an entity, from the stream of alert changes.

An alert is per (entity, detector), so agreement is derived here, downstream of the
:class:`~detectors.alerts.AlertBook`: an account is flagged by its own open alerts and by every
open cluster alert that lists it as a member; a cluster is flagged by its own alerts and by
any other detector that flags at least ``corroboration_share`` of its members. Detectors
mapped to the same *family* (e.g. two rate detectors reading the same counters) count once.

Examples
--------
>>> ag = Agreement()
>>> ag.observe({"state": "opened", "entity_type": "account", "entity_id": "a1",
...             "detector": "account_baseline"})
>>> ag.observe({"state": "opened", "entity_type": "cluster", "entity_id": "tmpl:9",
...             "detector": "template_cluster", "members": ["a1", "a2"]})
>>> ag.for_account("a1"), ag.for_account("a2")
(('account_baseline', 'template_cluster'), ('template_cluster',))
>>> ag.for_cluster("tmpl:9")  # a1 is half of the members: corroborates
('account_baseline', 'template_cluster')
>>> ag.observe({"state": "resolved", "entity_type": "account", "entity_id": "a1",
...             "detector": "account_baseline"})
>>> ag.independent(ag.for_account("a1"))
1
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Agreement"]

_Key = tuple[str, str]  # (entity_id, detector) of an open cluster alert


class Agreement:
    """Open alerts by entity, and cluster membership, for agreement counts.

    Parameters
    ----------
    families
        Detector name to family; detectors of one family are not independent and count once.
        Unlisted detectors are their own family.
    corroboration_share
        Share of a cluster's members another detector must flag to count as agreeing with
        the cluster alert.
    """

    def __init__(
        self, families: Mapping[str, str] | None = None, corroboration_share: float = 0.1
    ) -> None:
        self.families = dict(families or {})
        self.corroboration_share = corroboration_share
        self._accounts: dict[str, set[str]] = {}
        self._clusters: dict[str, set[str]] = {}
        self._members: dict[_Key, frozenset[str]] = {}
        self._member_of: dict[str, set[_Key]] = {}

    def observe(self, change: Mapping[str, Any]) -> None:
        """Fold one alert change in (opened / updated / resolved)."""
        etype, eid, det = change["entity_type"], change["entity_id"], change["detector"]
        open_ = change.get("state") != "resolved"
        table = self._clusters if etype == "cluster" else self._accounts
        dets = table.setdefault(eid, set())
        if open_:
            dets.add(det)
        else:
            dets.discard(det)
            if not dets:
                del table[eid]
        if etype != "cluster":
            return
        key = (eid, det)
        for m in self._members.pop(key, frozenset()):
            owners = self._member_of.get(m)
            if owners is not None:
                owners.discard(key)
                if not owners:
                    del self._member_of[m]
        if open_:
            members = frozenset(change.get("members") or ())
            self._members[key] = members
            for m in members:
                self._member_of.setdefault(m, set()).add(key)

    def for_account(self, account_id: str) -> tuple[str, ...]:
        """Detectors flagging ``account_id``: its own alerts and clusters listing it."""
        dets = set(self._accounts.get(account_id, ()))
        dets.update(det for _, det in self._member_of.get(account_id, ()))
        return tuple(sorted(dets))

    def for_cluster(self, cluster_id: str) -> tuple[str, ...]:
        """Detectors flagging ``cluster_id``, and those flagging enough of its members."""
        own = set(self._clusters.get(cluster_id, ()))
        members: set[str] = set()
        for (cid, _), ms in self._members.items():
            if cid == cluster_id:
                members |= ms
        if members:
            counts: dict[str, int] = {}
            for m in members:
                seen = set(self._accounts.get(m, ()))
                seen.update(d for c, d in self._member_of.get(m, ()) if c != cluster_id)
                for d in seen:
                    counts[d] = counts.get(d, 0) + 1
            need = max(1.0, self.corroboration_share * len(members))
            own.update(d for d, n in counts.items() if n >= need)
        return tuple(sorted(own))

    def for_change(self, change: Mapping[str, Any]) -> tuple[str, ...]:
        """Agreeing detectors for the entity of ``change`` (its own detector included)."""
        if change["entity_type"] == "cluster":
            dets = set(self.for_cluster(change["entity_id"]))
        else:
            dets = set(self.for_account(change["entity_id"]))
        dets.add(change["detector"])
        return tuple(sorted(dets))

    def independent(self, detectors: tuple[str, ...]) -> int:
        """How many independent detectors (distinct families) are in ``detectors``."""
        return len({self.families.get(d, d) for d in detectors})

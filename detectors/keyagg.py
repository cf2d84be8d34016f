"""Per-key aggregates of one cluster window, and per-key baselines across cluster windows.

A *key* (:mod:`detectors.keys`) is an attribute several accounts can share: a /24, a card, a
signup cohort, a template. For every key the cluster detector needs, per cluster window, how
many account-windows carried it (all accounts: the denominator of the suspicious share) and,
for the suspicious ones, who they were. Across cluster windows it keeps a baseline: the
exponentially weighted number of suspicious members, for keys that ever had a few.

Examples
--------
>>> agg = KeyAgg()
>>> for acct in ["a", "b", "a"]:
...     agg.add(acct, young=True, regular=False, org=None, requests=2, output_tokens=10)
>>> len(agg.members), agg.susp_aw, agg.requests, agg.young, agg.orgs
(2, 3, 6, 2, {None: 2})
>>> n, share, z = key_stats(agg, total=6, baseline=None)
>>> n, share, round(z, 2)
(2, 0.5, 2.0)
>>> org_dominated(agg)
False
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from detectors.keys import Key

__all__ = ["KeyAgg", "KeyBaseline", "fold_baselines", "key_stats", "org_dominated"]


class KeyAgg:
    """One key's suspicious account-windows in the current cluster window."""

    __slots__ = (
        "_e",
        "_m",
        "harvesters",
        "key",
        "output_tokens",
        "regular",
        "requests",
        "susp_aw",
        "synced",
        "young",
    )

    def __init__(self, key: Key | None = None) -> None:
        #: The key this aggregates, as the one tuple the cluster detector keeps for it (the
        #: other structures of the cluster window point to it instead of holding copies).
        self.key = key
        # The members (see :attr:`members`): None, one account (its entry in ``_e``), or a
        # dict account -> (young, org) from the second one on.
        self._m: dict[str, tuple[bool, str | None]] | str | None = None
        self._e: tuple[bool, str | None] | None = None
        self.young = 0
        self.regular = 0
        self.susp_aw = 0
        self.requests = 0
        self.output_tokens = 0
        self.synced = 0  # members already folded into the key's campaign
        # Members an account rule flagged as harvesters (rarely any: None until one).
        self.harvesters: set[str] | None = None

    def add(
        self,
        account_id: str,
        *,
        young: bool,
        regular: bool,
        org: str | None,
        requests: int,
        output_tokens: int,
        harvester: bool = False,
        entry: tuple[bool, str | None] | None = None,
    ) -> None:
        """Count one suspicious account-window; a member counts once per cluster window.
        ``entry`` is ``(young, org)`` made once by the caller for all of the account's keys
        (issue 16: a tuple per member per key was ~17 B per account)."""
        self.susp_aw += 1
        self.requests += requests
        self.output_tokens += output_tokens
        m = self._m
        if type(m) is dict:
            new = account_id not in m
            if new:
                m[account_id] = (young, org) if entry is None else entry
        elif m is None:
            new = True
            self._m, self._e = account_id, (young, org) if entry is None else entry
        elif m == account_id:
            new = False
        else:
            new = True
            self._m = {m: self._e, account_id: (young, org) if entry is None else entry}
            self._e = None
        if new:
            self.young += young
            self.regular += regular
        if harvester:
            if self.harvesters is None:
                self.harvesters = set()
            self.harvesters.add(account_id)

    @property
    def members(self) -> dict[str, tuple[bool, str | None]]:
        """account -> (young, org), in order of arrival; one entry tuple per observed
        account-window, shared by its keys. Most keys have one suspect in a cluster window,
        and a dict of one is 184 B: such a key keeps it in two slots and this is then a new
        dict at each read (members are only ever added through :meth:`add`)."""
        m = self._m
        if type(m) is dict:
            return m
        return {} if m is None else {m: self._e}  # type: ignore[dict-item]

    @members.setter
    def members(self, members: dict[str, tuple[bool, str | None]]) -> None:
        self._m, self._e = members, None

    @property
    def orgs(self) -> dict[str | None, int]:
        """Members per organisation, in order of each organisation's first member: derived
        from :attr:`members` (a dict per key was ~18 B per account; only
        :func:`org_dominated` and snapshots read it)."""
        out: dict[str | None, int] = {}
        for _, org in self.members.values():
            out[org] = out.get(org, 0) + 1
        return out


class KeyBaseline:
    """A key's baseline across cluster windows (only keys that ever had suspects)."""

    __slots__ = ("ew_susp", "last_seen", "recent", "windows")

    def __init__(self) -> None:
        self.ew_susp = 0.0
        self.windows = 0
        self.last_seen = 0.0
        # Suspicious members of the last hour (account -> young), so a key flagged now
        # also names the members it had before the alarm: at one request per hour, most
        # of a campaign was seen in earlier cluster windows.
        self.recent: dict[str, tuple[bool, str | None]] = {}


def key_stats(agg: KeyAgg, total: int, baseline: KeyBaseline | None) -> tuple[int, float, float]:
    """Suspicious members, their share of the key's account-windows (``total``), and the
    Poisson z of the member count over the key's baseline (a new key has baseline 0)."""
    n = len(agg.members)
    share = agg.susp_aw / max(total, 1)
    base = baseline.ew_susp if baseline is not None else 0.0
    z = (n - base) / math.sqrt(base + 1.0)
    return n, share, z


def org_dominated(agg: KeyAgg) -> bool:
    """Nearly all suspects are old accounts of one declared organisation: a customer running
    evaluation harnesses on its own keys, not an operator."""
    n = len(agg.members)
    org, top = max(agg.orgs.items(), key=lambda kv: kv[1])
    return org is not None and top >= 0.8 * n and agg.young < 0.3 * n


def fold_baselines(
    baselines: dict[object, KeyBaseline],
    aggs: dict[object, KeyAgg],
    *,
    flagged: set[object] | frozenset[object],
    in_campaign: Iterable[object] | dict[object, str],
    alpha: float,
    end: float,
) -> None:
    """Close a cluster window: every key with suspects learns its member count (a flagged
    key does not: its baseline must not learn the attack), keys without any decay, and
    keys idle for a week are dropped once there are many."""
    owned = in_campaign if isinstance(in_campaign, dict) else set(in_campaign)
    for k, agg in aggs.items():
        n = len(agg.members)
        st = baselines.get(k)
        if st is None:
            if n < 3:
                continue
            st = baselines[k] = KeyBaseline()
        if k not in flagged:
            st.ew_susp += alpha * (n - st.ew_susp)
        st.windows += 1
        st.last_seen = end
        if k not in owned:
            st.recent.update(agg.members)
            if len(st.recent) > 4 * n + 64:
                # Keep roughly the last hour: drop the oldest insertions.
                for old in list(st.recent)[: len(st.recent) - 4 * n - 64]:
                    del st.recent[old]
    for k, st in baselines.items():
        if k not in aggs:
            st.ew_susp *= 1 - alpha
    if len(baselines) > 100_000:
        cutoff = end - 7 * 86400
        for k in [k for k, st in baselines.items() if st.last_seen < cutoff]:
            del baselines[k]

"""Template discovery: link prompt fingerprints that no exact key joins into stable
template groups.

Campaigns fill one prompt template with different slot values, so their fingerprints are
near duplicates (a few bits apart) but rarely identical: no exact-match key sees them. The
index cuts each fingerprint into four 16-bit LSH bands
(:func:`~detectors.fingerprint.band_keys`); a fingerprint joins a group when one of its
bands is indexed and it is within ``max_bits`` of the fingerprint that put it there. A
group is created only when ``min_accounts`` distinct accounts send near-duplicate prompts
within one cluster window, so one account's own repeated prompts never found a group, and
only the groups of suspicious accounts are indexed, which keeps the index small.

Group ids come from the founding fingerprint and never change: accounts banned and replaced
by fresh ones that use the same template land in the same group.

Examples
--------
>>> idx = TemplateIndex(min_accounts=3, max_bits=10)
>>> base = 0x0123456789ABCDEF
>>> for i, acct in enumerate(["a", "b", "c"]):
...     idx.add(base ^ (1 << (5 * i)), acct)
>>> sorted(idx.promote().items())
[('a', 'tpl-0123456789abcdee'), ('b', 'tpl-0123456789abcdee'), ('c', 'tpl-0123456789abcdee')]
>>> idx.lookup(base ^ (1 << 40) ^ (1 << 60))
'tpl-0123456789abcdee'
>>> idx.lookup(0xFEDCBA9876543210) is None
True
"""

from __future__ import annotations

from typing import Final

from detectors.fingerprint import band_keys

__all__ = ["TemplateIndex"]

_MAX_BANDS_PER_GROUP: Final = 4096


class TemplateIndex:
    """Band index of template groups plus this cluster window's unmatched candidates.

    Parameters
    ----------
    min_accounts
        Distinct accounts with near-duplicate prompts needed to found a group.
    max_bits
        Hamming distance within which two fingerprints are the same template.
    """

    def __init__(self, min_accounts: int = 4, max_bits: int = 10) -> None:
        self.min_accounts = min_accounts
        self.max_bits = max_bits
        # band key -> (group id, the fingerprint that registered the band)
        self._index: dict[int, tuple[str, int]] = {}
        self._bands: dict[str, int] = {}  # group id -> bands registered
        self._last_seen: dict[str, float] = {}
        # This cluster window's candidates: band key -> (fp, account), or a list of them
        # from the second (see :meth:`candidates`).
        self._pending: dict[int, tuple[int, str] | list[tuple[int, str]]] = {}
        self._dirty: set[int] = set()

    @property
    def groups(self) -> int:
        return len(self._bands)

    def _register(self, gid: str, fp: int) -> None:
        if self._bands[gid] >= _MAX_BANDS_PER_GROUP:
            return
        hit = (gid, fp)  # one tuple for every band it registers (issue 16)
        for bk in band_keys(fp):
            if bk not in self._index:
                self._index[bk] = hit
                self._bands[gid] += 1

    def lookup(self, fp: int, ts: float = 0.0) -> str | None:
        """The group of ``fp`` (registering its other bands), or None."""
        for bk in band_keys(fp):
            hit = self._index.get(bk)
            if hit is not None and (hit[1] ^ fp).bit_count() <= self.max_bits:
                gid = hit[0]
                self._register(gid, fp)
                self._last_seen[gid] = ts
                return gid
        return None

    def add(self, fp: int, account_id: str) -> None:
        """Remember an unmatched fingerprint of a suspicious account for this window."""
        cand = (fp, account_id)  # one tuple in each of its four bands (issue 16)
        pending = self._pending
        for bk in band_keys(fp):
            bucket = pending.get(bk)
            if bucket is None:
                # Most bands hold one candidate: the tuple itself, a list from the second.
                pending[bk] = cand
                n = 1
            elif type(bucket) is tuple:
                pending[bk] = [bucket, cand]
                n = 2
            elif len(bucket) < 4096:
                bucket.append(cand)
                n = len(bucket)
            else:
                continue
            if n >= self.min_accounts:
                self._dirty.add(bk)

    def candidates(self, bk: int) -> list[tuple[int, str]]:
        """The pending (fingerprint, account) candidates of band ``bk``."""
        bucket = self._pending.get(bk)
        if bucket is None:
            return []
        return [bucket] if type(bucket) is tuple else bucket  # type: ignore[list-item]

    def promote(self, ts: float = 0.0) -> dict[str, str]:
        """Found groups from buckets with enough distinct accounts; return account -> group
        for every account whose pending fingerprint joined one."""
        out: dict[str, str] = {}
        for bk in sorted(self._dirty):
            bucket = self.candidates(bk)
            if not bucket:
                continue
            seed = bucket[0][0]
            near = [(fp, a) for fp, a in bucket if (fp ^ seed).bit_count() <= self.max_bits]
            if len({a for _, a in near}) < self.min_accounts:
                continue
            gid = self.lookup(seed, ts)
            if gid is None:
                gid = f"tpl-{seed:016x}"
                self._bands.setdefault(gid, 0)
                self._last_seen[gid] = ts
            for fp, a in near:
                self._register(gid, fp)
                out.setdefault(a, gid)
            # Founded: these candidates are matched from now on.
            self._pending[bk] = [(fp, a) for fp, a in bucket if (fp, a) not in set(near)]
        self._dirty.clear()
        return out

    def end_window(self) -> None:
        """Forget this cluster window's unmatched candidates."""
        self._pending.clear()
        self._dirty.clear()

    def prune(self, before: float) -> int:
        """Drop groups not seen since ``before``; return how many."""
        old = {g for g, t in self._last_seen.items() if t < before}
        if not old:
            return 0
        self._index = {bk: v for bk, v in self._index.items() if v[0] not in old}
        for g in old:
            del self._last_seen[g]
            self._bands.pop(g, None)
        return len(old)

"""The cluster stages chained in one process, for ``replay`` and tests: account summaries
→ key batches (:func:`~detectors.summary.route`) → per-key totals
(:class:`~detectors.keycount.KeyCounter`) → campaign assembly
(:class:`~detectors.assembly.CampaignAssembly`). The worker runs the same three steps on
three topics. Here the key batches go to the per-key stage as columns
(:func:`~detectors.summary.fold_keys`, :meth:`~detectors.keycount.KeyCounter.add_folded`:
what :func:`~detectors.summary.route` would encode, counted the same way), and the window
totals go through the wire codec, so campaign assembly reads the same bytes as in the
worker, split into the same chunks (:func:`~detectors.summary.encode_chunks`). One
source and one key partition: the results do not depend on either count.

Examples
--------
>>> from detectors.summary import AccountSummary
>>> chain = LocalClusterStages(window_s=60, cluster_min_members=5)
>>> found = []
>>> for minute in range(12):
...     found += chain.window(minute * 60.0, [
...         AccountSummary(f"h{minute % 6}-{i}", minute * 60.0, [("pay", "card-1")], 0.8,
...                        True, True, 1, 2000, None, {"m": 1}, [])
...         for i in range(10)])
>>> found[-1].detector, found[-1].member_count
('cluster_campaign', 60)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from detectors.assembly import CampaignAssembly
from detectors.findings import Finding
from detectors.keycount import KeyCounter
from detectors.summary import AccountSummary, decode, encode_chunks, fold_keys

__all__ = ["LocalClusterStages"]


class LocalClusterStages:
    """Takes the :class:`~detectors.assembly.CampaignAssembly` keywords."""

    def __init__(self, window_s: float = 60.0, **assembly: Any) -> None:
        self.window_s = window_s
        self.assembly = CampaignAssembly(window_s=window_s, **assembly)
        self.keys = KeyCounter(window_s, self.assembly.clusters.cluster_windows)
        self.suspicious = self.assembly.suspicious

    def window(
        self,
        start: float,
        summaries: list[AccountSummary],
        groups: Sequence[Finding] = (),
        *,
        plain_labels: Iterable[str] = (),
    ) -> list[Finding]:
        """One closed account window's summaries (and its swarm ``groups``, see
        :data:`~detectors.summary.FOLDABLE_DETECTORS`) in, its campaign findings and the
        groups no campaign took out. ``plain_labels``: the key labels, all in one list, of
        further account-windows of the window that are no suspects (extraction below
        ``suspicious``), for which the caller made no summary: they count as those
        summaries' keys would."""
        end = start + self.window_s
        # The key batch goes to the per-key stage as columns, not through the wire codec: it
        # is a few entries per account of the window (route's sorted tuples, their JSON and
        # its parse and check were a third of this chain), and it never left the process.
        # KeyCounter.add_folded counts it as add() counts the decoded batch (tests compare
        # them on random windows, chunked ones included). The window totals, which carry
        # the suspects' summaries, still go through encode_chunks and decode below.
        counts, scounts, susp = fold_keys(summaries, parts=1, suspicious=self.suspicious)
        counts.update(plain_labels)
        self.keys.add_folded(start, 0, counts, scounts, susp.get(0, []),
                             [f.to_dict() for f in groups])
        self.keys.watermark(0, end, sources=1)
        asm = self.assembly
        for rec in self.keys.close(part=0):
            for raw in encode_chunks(rec):
                asm.add(decode(raw))
        asm.watermark(0, end, parts=1)
        return asm.close()

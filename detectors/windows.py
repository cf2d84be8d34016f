"""Event-time tumbling windows per account.

Per-event work is only counter updates on a compact :class:`AccountWindow`; everything
statistical happens later, once per closed window (see :mod:`detectors.features`).

Windows are aligned to the epoch (``start = ts - ts % size``) so every account shares the
same bucket boundaries, which lets cluster detectors aggregate one bucket at a time.
A bucket closes when the watermark passes ``end + lateness``.

Examples
--------
>>> from detectors.events import Event
>>> w = Windower(size_s=60, lateness_s=5)
>>> w.add(Event("a", 120.5, "m", 10, 100, event_id="e1"))
True
>>> w.add(Event("a", 121.0, "m", 10, 100, event_id="e1"))  # same event_id: a duplicate
False
>>> [(c.start, len(c.accounts)) for c in w.close_until(186.0)]
[(120.0, 1)]
>>> w.add(Event("a", 150.0, "m", 10, 100))  # its window has closed: late
False
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from detectors.events import Event

__all__ = ["AccountWindow", "ClosedWindow", "Windower"]


class AccountWindow:
    """Counters of one account in one window. Slots keep it to a few hundred bytes."""

    __slots__ = (
        "first_ts",
        "input_tokens",
        "last_event",
        "last_ts",
        "output_tokens",
        "requests",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.first_ts = float("inf")
        self.last_ts = float("-inf")
        # The newest event carries the account's attributes (tier, network, ...) for features
        # and cluster keys, without copying them per event.
        self.last_event: Event | None = None

    def add(self, ev: Event) -> None:
        self.requests += 1
        self.input_tokens += ev.input_tokens
        self.output_tokens += ev.output_tokens
        ts = ev.ts
        if ts < self.first_ts:
            self.first_ts = ts
        if ts >= self.last_ts:
            self.last_ts = ts
            self.last_event = ev


@dataclass(slots=True)
class ClosedWindow:
    """One closed bucket: its bounds and every account that was active in it."""

    start: float
    end: float
    accounts: dict[str, AccountWindow] = field(default_factory=dict)


class Windower:
    """Assign events to per-account tumbling windows and close them on the watermark.

    Parameters
    ----------
    size_s
        Window length in seconds of event time.
    lateness_s
        How long after a window's end it still accepts events. Larger values tolerate
        more disorder across partitions but delay findings by the same amount.
    """

    def __init__(self, size_s: float = 60.0, lateness_s: float = 10.0) -> None:
        if size_s <= 0:
            raise ValueError(f"size_s must be > 0, got {size_s}")
        if lateness_s < 0:
            raise ValueError(f"lateness_s must be >= 0, got {lateness_s}")
        self.size_s = size_s
        self.lateness_s = lateness_s
        self._buckets: dict[float, dict[str, AccountWindow]] = {}
        self._seen: dict[float, set[str]] = {}
        self._closed_before = float("-inf")
        self.watermark = float("-inf")
        self.late_events = 0
        self.duplicate_events = 0

    def add(self, ev: Event) -> bool:
        """Count ``ev`` in its window; False when it is late or a duplicate ``event_id``."""
        ts = ev.ts
        start = ts - ts % self.size_s
        if start < self._closed_before:
            self.late_events += 1
            return False
        if ev.event_id is not None:
            seen = self._seen.get(start)
            if seen is None:
                seen = self._seen[start] = set()
            elif ev.event_id in seen:
                self.duplicate_events += 1
                return False
            seen.add(ev.event_id)
        bucket = self._buckets.get(start)
        if bucket is None:
            bucket = self._buckets[start] = {}
        acc = bucket.get(ev.account_id)
        if acc is None:
            acc = bucket[ev.account_id] = AccountWindow()
        acc.add(ev)
        if ts > self.watermark:
            self.watermark = ts
        return True

    def close_until(self, watermark: float) -> Iterator[ClosedWindow]:
        """Close, in time order, every window whose ``end + lateness`` is at or before
        ``watermark``. Buckets with no events are skipped."""
        if watermark > self.watermark:
            self.watermark = watermark
        limit = watermark - self.lateness_s
        ready = sorted(s for s in self._buckets if s + self.size_s <= limit)
        for start in ready:
            accounts = self._buckets.pop(start)
            self._seen.pop(start, None)
            self._closed_before = max(self._closed_before, start + self.size_s)
            yield ClosedWindow(start, start + self.size_s, accounts)
        # Even with no events, time moves on: later events for these spans are late.
        boundary = limit - limit % self.size_s
        if boundary > self._closed_before:
            self._closed_before = boundary
            for start in [s for s in self._seen if s < boundary]:
                del self._seen[start]

    @property
    def open_accounts(self) -> int:
        """Distinct account-windows currently open (a gauge for the worker)."""
        return sum(len(b) for b in self._buckets.values())

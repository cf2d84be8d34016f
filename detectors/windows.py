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
from typing import Final

from detectors.events import Event

__all__ = [
    "HARVEST_OUTPUT_TOKENS",
    "MAX_FPS",
    "MAX_TOKENS_STOPS",
    "NEAR_DUP_BITS",
    "AccountWindow",
    "ClosedWindow",
    "Windower",
]

#: Two fingerprints at most this many bits apart are near duplicates (one template).
NEAR_DUP_BITS: Final = 10


#: Stop reasons that mean the output was cut at the caller's ``max_tokens``.
MAX_TOKENS_STOPS: Final = frozenset({"max_tokens", "length"})
#: A single-turn answer this long (or cut at max_tokens) is "harvest-like": what a
#: distillation pipeline wants, and what chat and app traffic rarely produce.
HARVEST_OUTPUT_TOKENS: Final = 1500
#: Distinct prompt fingerprints kept per account-window (a sample; later ones are counted).
MAX_FPS: Final = 16


class AccountWindow:
    """Counters of one account in one window. Slots keep it to a few hundred bytes.

    Every update is a counter increment or a comparison with the previous event; sets of
    networks and agents are created only when a second distinct value appears.

    Examples
    --------
    >>> from detectors.events import Event
    >>> w = AccountWindow()
    >>> w.add(Event("a", 1.0, "m", 10, 4096, stop_reason="max_tokens", turn=1,
    ...             prompt_fingerprint="00000000000000ff", ip="1.2.3.4"))
    >>> w.add(Event("a", 3.0, "m", 10, 100, status=429, turn=2,
    ...             prompt_fingerprint="00000000000000fe", ip="1.2.3.9"))
    >>> w.requests, w.max_tokens_stops, w.multi_turn, w.rate_limited, w.near_dups, w.n_ips
    (2, 1, 1, 1, 1, 2)
    """

    __slots__ = (
        "_asns",
        "_ips",
        "_models",
        "_uas",
        "errors",
        "first_event",
        "first_ts",
        "fp_overflow",
        "fps",
        "gap_n",
        "gap_sum",
        "gap_sumsq",
        "harvest_like",
        "input_tokens",
        "last_event",
        "last_ts",
        "max_tokens_stops",
        "multi_turn",
        "near_dups",
        "org_id",
        "output_tokens",
        "rate_limited",
        "requests",
    )

    def __init__(self, ev: Event | None = None) -> None:
        if ev is not None:
            self._first(ev)
            return
        self.requests = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.max_tokens_stops = 0
        self.harvest_like = 0
        self.multi_turn = 0
        self.errors = 0
        self.rate_limited = 0
        self.first_ts = float("inf")
        self.last_ts = float("-inf")
        self.gap_n = 0
        self.gap_sum = 0.0
        self.gap_sumsq = 0.0
        # The first and newest events carry the account's attributes (tier, network, ...) for
        # features and cluster keys, without copying them per event.
        self.first_event: Event | None = None
        self.last_event: Event | None = None
        self.fps: list[str] | None = None
        self.fp_overflow = 0
        self.near_dups = 0
        self._ips: set[str] | None = None
        self._asns: set[int] | None = None
        self._uas: set[str] | None = None
        self._models: dict[str, int] | None = None
        # The org of the newest event that declared one (the policy's org allowlist needs
        # it; an event without org_id does not erase what an earlier one said).
        self.org_id: str | None = None

    def _first(self, ev: Event) -> None:
        """``__init__`` then :meth:`add` of ``ev``, in one pass: with about one event per
        account-window (the worst mix) that pair was most of the per-event window work.
        Tests compare every slot with the two-step way."""
        out = ev.output_tokens
        turn = ev.turn
        single = turn is None or turn <= 1
        self.requests = 1
        self.input_tokens = ev.input_tokens
        self.output_tokens = out
        if ev.stop_reason in MAX_TOKENS_STOPS:
            self.max_tokens_stops = 1
            self.harvest_like = 1 if single else 0
        else:
            self.max_tokens_stops = 0
            self.harvest_like = 1 if single and out >= HARVEST_OUTPUT_TOKENS else 0
        self.multi_turn = 0 if single else 1
        status = ev.status
        if status is not None and status >= 400:
            self.errors = 1
            self.rate_limited = 1 if status == 429 else 0
        else:
            self.errors = self.rate_limited = 0
        self.first_ts = self.last_ts = ev.ts
        self.gap_n = 0
        self.gap_sum = 0.0
        self.gap_sumsq = 0.0
        self.first_event = self.last_event = ev
        fp = ev.prompt_fingerprint
        self.fps = None if fp is None else [fp]
        self.fp_overflow = 0
        self.near_dups = 0
        self._ips = self._asns = self._uas = None
        self._models = None
        self.org_id = ev.org_id

    def add(self, ev: Event) -> None:
        self.requests += 1
        self.input_tokens += ev.input_tokens
        self.output_tokens += ev.output_tokens
        turn = ev.turn
        if ev.stop_reason in MAX_TOKENS_STOPS:
            self.max_tokens_stops += 1
            if turn is None or turn <= 1:
                self.harvest_like += 1
        elif ev.output_tokens >= HARVEST_OUTPUT_TOKENS and (turn is None or turn <= 1):
            self.harvest_like += 1
        if turn is not None and turn > 1:
            self.multi_turn += 1
        status = ev.status
        if status is not None and status >= 400:
            self.errors += 1
            if status == 429:
                self.rate_limited += 1
        ts = ev.ts
        if ev.org_id is not None and (self.org_id is None or ts >= self.last_ts):
            self.org_id = ev.org_id
        first = self.first_event
        if first is None:
            self.first_event = self.last_event = ev
            self.first_ts = self.last_ts = ts
        else:
            if ts >= self.last_ts:
                gap = ts - self.last_ts
                self.gap_n += 1
                self.gap_sum += gap
                self.gap_sumsq += gap * gap
                self.last_ts = ts
                self.last_event = ev
            elif ts < self.first_ts:
                self.first_ts = ts
            if ev.ip != first.ip:
                if self._ips is None:
                    self._ips = {first.ip} if first.ip is not None else set()
                if ev.ip is not None:
                    self._ips.add(ev.ip)
            if ev.asn != first.asn:
                if self._asns is None:
                    self._asns = {first.asn} if first.asn is not None else set()
                if ev.asn is not None:
                    self._asns.add(ev.asn)
            if ev.user_agent != first.user_agent:
                if self._uas is None:
                    self._uas = {first.user_agent} if first.user_agent is not None else set()
                if ev.user_agent is not None:
                    self._uas.add(ev.user_agent)
            if ev.model != first.model:
                models = self._models
                if models is None:
                    # Requests so far, all on the first event's model.
                    models = self._models = {first.model: self.requests - 1}
                models[ev.model] = models.get(ev.model, 0) + 1
            elif self._models is not None:
                self._models[ev.model] += 1
        fp = ev.prompt_fingerprint
        if fp is not None:
            fps = self.fps
            if fps is None:
                self.fps = [fp]
            elif fp in fps:
                self.near_dups += 1
            elif len(fps) < MAX_FPS:
                # A near duplicate of the previous prompt (template with its slots refilled).
                try:
                    if (int(fp, 16) ^ int(fps[-1], 16)).bit_count() <= NEAR_DUP_BITS:
                        self.near_dups += 1
                except ValueError:
                    pass
                fps.append(fp)
            else:
                self.fp_overflow += 1

    @property
    def n_ips(self) -> int:
        return len(self._ips) if self._ips is not None else int(self._has("ip"))

    @property
    def n_asns(self) -> int:
        return len(self._asns) if self._asns is not None else int(self._has("asn"))

    @property
    def n_uas(self) -> int:
        return len(self._uas) if self._uas is not None else int(self._has("user_agent"))

    def _has(self, name: str) -> bool:
        return self.first_event is not None and getattr(self.first_event, name) is not None

    @property
    def models(self) -> dict[str, int]:
        """Requests per model in this window."""
        if self._models is not None:
            return dict(self._models)
        return {} if self.first_event is None else {self.first_event.model: self.requests}

    @property
    def distinct_fps(self) -> int:
        """Distinct prompt fingerprints (exact for the first ``MAX_FPS``, then an upper bound)."""
        return (len(self.fps) if self.fps is not None else 0) + self.fp_overflow


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
            bucket[ev.account_id] = AccountWindow(ev)
        else:
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
            # Accounts in id order, not arrival order: the population, template and cluster
            # models learn from them one by one, and arrival order depends on how partitions
            # interleave in fetches (worker) or on file order (replay).
            accounts = dict(sorted(self._buckets.pop(start).items()))
            self._seen.pop(start, None)
            self._closed_before = max(self._closed_before, start + self.size_s)
            yield ClosedWindow(start, start + self.size_s, accounts)
        # Even with no events, time moves on: later events for these spans are late.
        boundary = limit - limit % self.size_s
        if boundary > self._closed_before:
            self._closed_before = boundary
            for start in [s for s in self._seen if s < boundary]:
                del self._seen[start]

    def drop(self, account_ids: set[str]) -> None:
        """Remove these accounts from every open window (their partition moved away).

        Their events will be read again from Kafka by whoever owns them next, this worker
        included, so the event ids remembered for duplicate detection are forgotten too.
        """
        for bucket in self._buckets.values():
            for account_id in account_ids:
                bucket.pop(account_id, None)
        for seen in self._seen.values():
            seen.clear()

    @property
    def closed_before(self) -> float:
        """Every window starting before this time has closed; its events are late."""
        return self._closed_before

    @property
    def next_close(self) -> float:
        """The smallest watermark at which :meth:`close_until` can close anything: callers
        skip it until then (saves a scan per event)."""
        if not self._buckets:
            return self._closed_before + self.size_s + self.lateness_s
        return min(self._buckets) + self.size_s + self.lateness_s

    @property
    def open_accounts(self) -> int:
        """Distinct account-windows currently open (a gauge for the worker)."""
        return sum(len(b) for b in self._buckets.values())

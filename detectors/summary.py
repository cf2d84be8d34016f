"""What the account stage tells the cluster stages about one closed account-window, and how
it travels: the wire records between the account stage, the per-key stage
(:mod:`detectors.keycount`) and campaign assembly (:mod:`detectors.assembly`).

A suspicious account-window becomes an :class:`AccountSummary`; of the others the account
stage keeps only their key labels (:class:`WindowSummaries`), all the batches need of them.
On the wire they are folded, per window, per source (a ``requests`` partition) and per key
partition, into one *key batch* (:func:`route`): for each cluster key of that partition,
how many account-windows carried it and how many of them were suspicious, plus the full
summaries of the suspicious accounts (a few percent of accounts; they carry the
fingerprints and models campaign assembly needs). Per account-window that is about 7 key
counts (~25 bytes each) and, for a suspect, ~250 bytes of summary.

A key batch (and a window total of the per-key stage) that would be bigger than
:data:`CHUNK_BYTES` encoded is split into *chunks* (:func:`encode_chunks`): records that
carry ``chunk`` (0-based) and ``chunks`` (how many the source sent for that window and
partition) besides the usual fields, each with a slice of the entries. A record that fits
carries neither field (it is chunk 0 of 1). Receivers deduplicate by (window, source,
chunk) with a :class:`ChunkLedger`, which also tells at window close whether a source's
chunks are all in; the window still closes on the watermarks.

Every record is JSON with a fixed schema and is validated on read (:func:`decode`):
whoever can write to the topics cannot make a stage run code, and a record that does not
decode raises :class:`SummaryFormatError` with a reason (the stage dead-letters and counts
it).

Examples
--------
>>> s = AccountSummary("a1", 600.0, [("pay", "card-1"), ("asn", 64500)], extraction=0.8,
...                    young=True, regular=False, requests=3, output_tokens=900, org=None,
...                    models={"m": 3}, fps=["0123456789abcdef"])
>>> batches = route(600.0, 0, [s], parts=1, suspicious=0.5)
>>> rec = decode(encode(batches[0]))
>>> rec["keys"]
[['asn:64500', 1, 1], ['pay:card-1', 1, 1]]
>>> AccountSummary.from_wire(rec["susp"][0]).keys
[('pay', 'card-1'), ('asn', 64500)]
>>> decode(b'{"t": "kb", "w": "soon"}')
Traceback (most recent call last):
...
detectors.summary.SummaryFormatError: bad_field: w must be a finite number
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate, chain, repeat
from operator import add, itemgetter
from typing import Any, Final

import orjson

from detectors.findings import SEVERITIES, Finding
from detectors.keys import KIND_NAMES, Key, key_label

__all__ = [
    "CHUNK_BYTES",
    "FOLDABLE_DETECTORS",
    "MAX_CHUNKS",
    "AccountSummary",
    "ChunkLedger",
    "SummaryFormatError",
    "WindowSummaries",
    "chunk_of",
    "decode",
    "encode",
    "encode_chunks",
    "fold_keys",
    "group_from_wire",
    "key_partition",
    "route",
]

#: Group detectors of the account stage whose findings travel to campaign assembly, which
#: folds a group that is mostly one campaign's members into that campaign's finding.
FOLDABLE_DETECTORS: Final = frozenset({"cohort_swarm"})

_MAX_ID: Final = 256
_MAX_VALUE: Final = 1024
_MAX_KEYS: Final = 64
_MAX_LIST: Final = 1_000_000
_MAX_GROUPS: Final = 4096

#: Largest key batch or window total the stages write, in encoded bytes; a bigger one is
#: split into chunks (:func:`encode_chunks`). Why 512 KiB: the account stage's producer
#: keeps aiokafka's default ``max_request_size`` (1 MiB) and the stage topics keep Kafka's
#: default ``max.message.bytes`` (1 MB), so a record must stay well under 1 MB with its
#: framing; the cluster stage's producer allows 16 MiB, but its records land on a topic with
#: the same default. Half a megabyte is still a few thousand accounts' keys per record, so a
#: window of 100k accounts is a few dozen records: the per-record cost stays negligible.
CHUNK_BYTES: Final = 512 * 1024

#: Most chunks one (window, source) record may be split into: 16384 x 512 KiB is 8 GiB of
#: one window of one source and key partition, far beyond any real window. Receivers keep
#: the chunk indexes they have seen per (window, source), so a forged count must not make
#: that unbounded.
MAX_CHUNKS: Final = 16_384


class SummaryFormatError(ValueError):
    """A cluster-stage record that does not decode; ``reason`` is a short fixed word."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def key_partition(label: str, parts: int) -> int:
    """The key partition of a key label: stable across processes and Python versions (the
    built-in ``hash`` of a string is salted per process)."""
    return zlib.crc32(label.encode()) % parts


@dataclass(slots=True)
class AccountSummary:
    """One closed account-window as the cluster detectors see it."""

    account_id: str
    window_start: float
    keys: list[Key]
    extraction: float
    young: bool
    regular: bool
    requests: int
    output_tokens: int
    org: str | None
    models: dict[str, int] | None
    fps: list[str]
    #: An account rule flagged it as a harvester in this window (account_extraction or
    #: account_profile_shift, warning or worse): its key-mates may be its accomplices.
    harvester: bool = False
    #: ``key_label`` of each of ``keys`` when the account stage already made them (never on
    #: the wire; :func:`route` formats them itself otherwise).
    labels: list[str] | None = field(default=None, compare=False, repr=False)

    def to_wire(self) -> dict[str, Any]:
        d = {
            "a": self.account_id,
            "w": self.window_start,
            "k": [list(k) for k in self.keys],
            "x": self.extraction,
            "y": self.young,
            "r": self.regular,
            "n": self.requests,
            "o": self.output_tokens,
            "g": self.org,
            "m": self.models,
            "f": self.fps,
        }
        if self.harvester:
            d["h"] = True  # only when set: other summaries keep their old bytes
        return d

    @classmethod
    def from_wire(cls, d: Any) -> AccountSummary:
        """Check every field of a wire summary; raise :class:`SummaryFormatError`."""
        if not isinstance(d, dict):
            raise SummaryFormatError("bad_summary", "summary must be an object")
        keys = d.get("k")
        if not isinstance(keys, list) or len(keys) > _MAX_KEYS:
            raise SummaryFormatError("bad_summary", "k must be a list of at most 64 keys")
        models = d.get("m")
        if models is not None and not (
            isinstance(models, dict)
            and len(models) <= _MAX_KEYS
            and all(_is_id(m) and _is_count(n) for m, n in models.items())
        ):
            raise SummaryFormatError("bad_summary", "m must map model names to counts")
        fps = d.get("f")
        if not isinstance(fps, list) or len(fps) > 4 or not all(_is_id(f) for f in fps):
            raise SummaryFormatError("bad_summary", "f must be at most 4 fingerprints")
        x = d.get("x")
        if not (isinstance(x, float | int) and not isinstance(x, bool) and 0.0 <= x <= 1.0):
            raise SummaryFormatError("bad_summary", "x must be a number in 0..1")
        org = d.get("g")
        if not (
            _is_id(d.get("a"))
            and (org is None or _is_id(org))
            and isinstance(d.get("y"), bool)
            and isinstance(d.get("r"), bool)
            and _is_count(d.get("n"))
            and _is_count(d.get("o"))
        ):
            raise SummaryFormatError("bad_summary", "a, g, y, r, n or o has the wrong type")
        harvester = d.get("h", False)
        if not isinstance(harvester, bool):
            raise SummaryFormatError("bad_summary", "h must be a boolean")
        return cls(
            d["a"],
            _finite(d, "w"),
            [_key(k) for k in keys],
            float(x),
            d["y"],
            d["r"],
            d["n"],
            d["o"],
            org,
            models,
            fps,
            harvester,
        )


@dataclass(slots=True)
class WindowSummaries:
    """One closed window of the account stage as it goes to :func:`route`: the summaries
    of its suspects, and only the key labels of its other account-windows.

    A summary and its key tuples for each of tens of thousands of account-windows (about
    ten objects the garbage collector tracks each, alive until the window is routed) were
    most of the collector's work at window close, and the batches need only the labels of
    an account-window that is no suspect. The worker splits the window by source (the
    ``requests`` partition an account's events come from, :meth:`by_source`), so each
    account-window stays attributable: ``accounts`` lists every account-window that counts
    (not those whose detection raised), in window order, and ``sizes`` says, for each,
    how many of the flat ``labels`` are its, or -1 where it has the next of ``summaries``
    instead. Flat lists of strings and small ints: one tracked object each, not one per
    account-window.

    >>> s = AccountSummary("b", 0.0, [("asn", 1)], 0.9, True, True, 1, 2, None, None, [])
    >>> w = WindowSummaries(0.0, [s], ["a", "b", "c"], [2, -1, 1], ["asn:1", "pay:x", "asn:2"])
    >>> {p: ([x.account_id for x in xs], ls) for p, (xs, ls) in w.by_source({"c": 1}).items()}
    {0: (['b'], ['asn:1', 'pay:x']), 1: ([], ['asn:2'])}
    """

    start: float
    summaries: list[AccountSummary]
    accounts: list[str]
    sizes: list[int]
    labels: list[str]
    groups: list[Finding] = field(default_factory=list)

    def by_source(
        self, source_of: Mapping[str, int | None]
    ) -> dict[int, tuple[list[AccountSummary], list[str]]]:
        """Summaries and plain labels per source (``source_of`` an account's; source 0 for
        an account it does not know or maps to None), sources in the order their first
        account-window comes in the window: the order the worker has always published
        them in, so the records keep their order on the topic."""
        get = source_of.get
        parts = list(map(get, self.accounts))
        seen = set(parts)
        if None in seen:
            parts = [0 if p is None else p for p in parts]
            seen = set(parts)
        if len(seen) == 1:
            # One source (a worker with one partition, or one whose window has accounts of
            # one partition only): the window as it is, no pass per account-window.
            return {parts[0]: (self.summaries, self.labels)}
        out: dict[int, tuple[list[AccountSummary], list[str]]] = {
            p: ([], []) for p in dict.fromkeys(parts)
        }
        summaries = iter(self.summaries)
        labels = self.labels
        pos = 0
        for p, n in zip(parts, self.sizes, strict=True):
            if n < 0:
                out[p][0].append(next(summaries))
            elif n:
                end = pos + n
                out[p][1].extend(labels[pos:end])
                pos = end
        return out


def _is_id(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= _MAX_ID


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _finite(d: dict[str, Any], name: str) -> float:
    v = d.get(name)
    if isinstance(v, bool) or not isinstance(v, float | int) or not math.isfinite(v):
        raise SummaryFormatError("bad_field", f"{name} must be a finite number")
    return float(v)


def _key(k: Any) -> Key:
    if not (
        isinstance(k, list)
        and 2 <= len(k) <= 3
        and k[0] in KIND_NAMES
        and k[0] != "tpl"  # template keys are found by campaign assembly, never sent
        and all(
            v is None
            or (isinstance(v, str) and len(v) <= _MAX_VALUE)
            or (isinstance(v, int) and not isinstance(v, bool))
            for v in k[1:]
        )
    ):
        raise SummaryFormatError("bad_key", "a key is [kind, value] or [kind, value, value]")
    return tuple(k)


def group_from_wire(d: Any) -> Finding:
    """Check a group finding that rides to campaign assembly (``g`` of a key batch or a
    window total) field by field; raise :class:`SummaryFormatError`. Campaign assembly signs
    what it passes on, so nothing unchecked may reach it."""
    if not isinstance(d, dict) or set(d) != _FINDING_FIELDS:
        raise SummaryFormatError("bad_group", "a group is a finding object")
    members, orgs, ev = d["members"], d["member_orgs"], d["evidence"]
    if not (
        d["entity_type"] == "cluster"
        and d["detector"] in FOLDABLE_DETECTORS
        and _is_id(d["entity_id"])
        and d["severity"] in SEVERITIES
        and d["org_id"] is None
        and _is_count(d["member_count"])
        and isinstance(members, list)
        and len(members) <= _MAX_LIST
        and _all_ids(members)
        and (orgs is None or (isinstance(orgs, dict) and len(orgs) <= len(members)
                              and _all_ids(orgs) and _all_ids(orgs.values())))
        and isinstance(ev, dict)
    ):
        raise SummaryFormatError("bad_group", "group fields have the wrong type")
    for name in ("window_start", "window_end", "score", "threshold"):
        _finite(d, name)
    return Finding.from_dict(d)


_FINDING_FIELDS: Final = frozenset(Finding.__dataclass_fields__)


def _all_ids(xs: Iterable[Any]) -> bool:
    """Every item a non-empty string of at most 256 characters, checked in C loops: a swarm
    lists thousands of members every window."""
    xs = list(xs)
    if not xs:
        return True
    if not set(map(type, xs)) <= {str}:
        return False
    lens = list(map(len, xs))
    return min(lens) > 0 and max(lens) <= _MAX_ID


def fold_keys(
    summaries: Iterable[AccountSummary],
    *,
    parts: int,
    suspicious: float,
    plain_labels: Iterable[str] = (),
) -> tuple[Counter[str], Counter[str], dict[int, list[dict[str, Any]]]]:
    """The columns of a window's key batches before they are split by key partition: how
    many account-windows carried each key label, how many of them were suspicious (only
    labels a suspect carried appear), and the suspects' wire summaries per key partition
    of their account, in summary order. :func:`route` makes the batches of it; the
    in-process cluster stages (:class:`~detectors.clusterchain.LocalClusterStages`) hand it
    to the per-key stage as it is (:meth:`~detectors.keycount.KeyCounter.add_folded`).
    ``plain_labels``: the key labels, all in one sequence, of further account-windows that
    are no suspects and have no summary (:class:`WindowSummaries`); they count as their
    summaries' labels would.

    >>> s = AccountSummary("a1", 0.0, [("asn", 1), ("pay", "c")], 0.9, True, True, 1, 2,
    ...                    None, None, [])
    >>> counts, scounts, susp = fold_keys([s, s], parts=1, suspicious=0.5)
    >>> dict(counts), dict(scounts), [d["a"] for d in susp[0]]
    ({'asn:1': 2, 'pay:c': 2}, {'asn:1': 2, 'pay:c': 2}, ['a1', 'a1'])
    """
    # Counted in C (Counter over the chained label lists) rather than a dict update per key
    # in Python: with about one event per account-window this fold was a quarter of the
    # window close. Every key counts; only suspicious account-windows count twice.
    labels: list[Iterable[str]] = []
    susp_labels: list[list[str]] = []
    susp: dict[int, list[dict[str, Any]]] = {}
    for s in summaries:
        ls = s.labels
        if ls is None:
            ls = [key_label(k) for k in s.keys]
        labels.append(ls)
        if s.extraction >= suspicious:
            susp_labels.append(ls)
            # One key partition (replay, tests): no partition to hash per suspect.
            q = 0 if parts == 1 else key_partition(s.account_id, parts)
            susp.setdefault(q, []).append(s.to_wire())
    labels.append(plain_labels)
    return (Counter(chain.from_iterable(labels)), Counter(chain.from_iterable(susp_labels)),
            susp)


def route(
    window_start: float,
    source: int,
    summaries: Iterable[AccountSummary],
    *,
    parts: int,
    suspicious: float,
    groups: Iterable[Finding] = (),
    plain_labels: Iterable[str] = (),
) -> dict[int, dict[str, Any]]:
    """Fold one window's summaries of one ``source`` into key batches, one per key
    partition that has something (and always one on ``source % parts``, so the cluster
    stages know the window had accounts even when none carried a key). ``groups``
    (:data:`FOLDABLE_DETECTORS` findings of the window) ride in that batch (``g``): it is
    deduplicated per (window, source) like the rest. ``plain_labels``: the key labels of
    the source's account-windows without a summary (no suspects, see
    :class:`WindowSummaries`), counted as their summaries' would be: the batches are the
    same as those of every account-window's summary."""
    counts, scounts, susp = fold_keys(summaries, parts=parts, suspicious=suspicious,
                                      plain_labels=plain_labels)
    out: dict[int, dict[str, Any]] = {}

    def batch(q: int) -> dict[str, Any]:
        b = out.get(q)
        if b is None:
            b = out[q] = {"t": "kb", "w": window_start, "p": source, "keys": [], "susp": []}
        return b

    home = batch(source % parts)
    wired = [f.to_dict() for f in groups]
    if wired:
        # Only when there are any: a window without groups keeps its old bytes.
        home["g"] = wired
    # Entries are (label, n, suspicious) tuples made in C (zip): the same JSON arrays as
    # lists, with no Python-level loop and no list per distinct label of the window.
    labels_sorted = sorted(counts)
    entries = zip(labels_sorted, map(counts.__getitem__, labels_sorted),
                  map(scounts.get, labels_sorted, repeat(0, len(labels_sorted))), strict=True)
    if parts == 1:
        # One key partition (replay, tests): no partition to hash per label.
        home["keys"] = list(entries)
    else:
        # Split by key partition in C loops, not a key_partition call and an append per
        # label (a million of them over bench400k, most of the worker's publishing):
        # each label's partition as key_partition makes it, the label indexes sorted by
        # partition (stable, so each partition keeps the sorted label order), one slice
        # per partition. Batches still open in the order their first label comes, as
        # they did when the entries were appended one by one (the records' order).
        rows = list(entries)
        qs = list(map(parts.__rmod__, map(zlib.crc32, map(str.encode, labels_sorted))))
        order = sorted(range(len(qs)), key=qs.__getitem__)
        per_q = Counter(qs)
        ends = dict(zip(sorted(per_q), accumulate(map(per_q.__getitem__, sorted(per_q))),
                        strict=True))
        for q in dict.fromkeys(qs):
            end = ends[q]
            batch(q)["keys"] = list(map(rows.__getitem__, order[end - per_q[q] : end]))
    for q, items in susp.items():
        batch(q)["susp"] = sorted(items, key=lambda d: d["a"])
    return out


def encode(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)


def encode_chunks(rec: dict[str, Any], budget: int = CHUNK_BYTES) -> list[bytes]:
    """Encode a key batch or window total as records of at most ``budget`` bytes each.

    A record that fits is encoded as it is (one record, the same bytes as :func:`encode`:
    no chunk fields). A bigger one is split into ``chunks`` records numbered ``chunk`` =
    0..chunks-1, each with the same other fields and a run of the entries of ``keys``, then
    ``susp``, then ``g``, packed in order up to the budget by their encoded sizes;
    receivers deduplicate by (window, source, chunk). Only a single entry bigger than the
    budget (a summary or group with very long ids) makes a chunk exceed it, alone: entries
    are never cut.

    >>> rec = {"t": "kb", "w": 0.0, "p": 3, "susp": [],
    ...        "keys": [[f"asn:{i}", 1, 0] for i in range(100)]}
    >>> len(encode(rec)), [len(r) for r in encode_chunks(rec, budget=400)]
    (1533, [384, 379, 379, 379, 289])
    >>> [decode(r)["chunk"] for r in encode_chunks(rec, budget=400)][-1]
    4
    >>> encode_chunks(rec) == [encode(rec)]
    True
    """
    raw = orjson.dumps(rec)
    if len(raw) <= budget:
        return [raw]
    names = ("keys", "susp", "g")
    lists = [rec.get(name) or [] for name in names]
    head = {k: v for k, v in rec.items() if k not in names}
    # The most a chunk's fields other than its entries take (widest chunk numbers, every
    # list present and empty); each entry then takes its encoded size and a comma.
    room = budget - len(orjson.dumps({**head, "chunk": MAX_CHUNKS, "chunks": MAX_CHUNKS,
                                      "keys": [], "susp": [], "g": []}))
    # Cumulative sizes over keys, susp, g in that order, computed in C (map, accumulate):
    # a key batch of a million accounts has millions of entries.
    sizes = chain.from_iterable(map(len, map(orjson.dumps, xs)) for xs in lists)
    cum = list(accumulate(map(add, sizes, repeat(1))))
    cuts = []
    lo, done = 0, 0
    while lo < len(cum):
        hi = bisect_right(cum, done + room, lo)
        hi = max(hi, lo + 1)  # an entry bigger than the room goes alone
        cuts.append((lo, hi))
        lo, done = hi, cum[hi - 1]
    if len(cuts) <= 1:
        return [raw]
    if len(cuts) > MAX_CHUNKS:
        raise ValueError(f"a record of {len(raw)} bytes needs {len(cuts)} chunks "
                         f"(at most {MAX_CHUNKS})")
    bounds = list(accumulate(map(len, lists)))  # where keys, susp and g end in cum
    out = []
    for i, (lo, hi) in enumerate(cuts):
        c = {**head, "chunk": i, "chunks": len(cuts)}
        begin = 0
        for name, xs, end in zip(names, lists, bounds, strict=True):
            part = xs[max(lo, begin) - begin : max(min(hi, end), begin) - begin]
            if part or name != "g":  # "g" only where it has groups, as in route
                c[name] = part
            begin = end
        out.append(orjson.dumps(c))
    return out


def chunk_of(rec: dict[str, Any]) -> tuple[int, int]:
    """(chunk, chunks) of a decoded record: (0, 1) for one that was not split."""
    return rec.get("chunk", 0), rec.get("chunks", 1)


class ChunkLedger:
    """Which chunks of one window each source has delivered: the dedupe of the per-key
    stage and campaign assembly.

    A chunk counts once; a chunk whose ``chunks`` differs from the first one seen from its
    source is from another split of the window (a re-send of different content) and is
    dropped, as a duplicate, so two sends never mix. :meth:`incomplete` says how many
    sources are missing chunks when the window closes.

    >>> led = ChunkLedger()
    >>> led.take(0, 0, 2), led.take(0, 0, 2), led.take(0, 1, 3), led.incomplete()
    (True, False, False, 1)
    >>> led.take(0, 1, 2), led.incomplete()
    (True, 0)
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        # source -> (chunks, chunk indexes seen); the set stays None while the source sent
        # one record and no chunks, the common case.
        self._seen: dict[int, tuple[int, set[int] | None]] = {}

    def take(self, source: int, chunk: int, chunks: int) -> bool:
        """Whether chunk ``chunk`` of ``chunks`` from ``source`` is new (and now seen)."""
        got = self._seen.get(source)
        if got is None:
            self._seen[source] = (chunks, {chunk} if chunks > 1 else None)
            return True
        n, seen = got
        if n != chunks or seen is None or chunk in seen:
            return False
        seen.add(chunk)
        return True

    def incomplete(self) -> int:
        """Sources that sent some chunks of the window but not all."""
        return sum(1 for n, seen in self._seen.values() if seen is not None and len(seen) < n)


def decode(raw: bytes | None) -> dict[str, Any]:
    """Parse and check one cluster-stage record (a key batch ``kb``, a window total ``wt``,
    or a watermark ``wm``); raise :class:`SummaryFormatError` otherwise. The suspicious
    summaries and groups inside are checked by :meth:`AccountSummary.from_wire` and
    :func:`group_from_wire` where they are used."""
    if raw is None:
        raise SummaryFormatError("null_value", "record without a value")
    if len(raw) > 64 * 1024 * 1024:
        raise SummaryFormatError("too_large", "record over 64 MiB")
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SummaryFormatError("not_json", "record is not JSON") from None
    if not isinstance(d, dict):
        raise SummaryFormatError("not_object", "record must be an object")
    kind = d.get("t")
    if kind == "wm":
        _finite(d, "b")
        for name in ("p", "n"):
            if not _is_count(d.get(name)) or d[name] > 100_000:
                raise SummaryFormatError("bad_field", f"{name} must be a partition number")
        if d["p"] >= d["n"]:
            raise SummaryFormatError("bad_field", "p must be below n")
        return d
    if kind not in ("kb", "wt"):
        raise SummaryFormatError("bad_type", "t must be kb, wt or wm")
    _finite(d, "w")
    if not _is_count(d.get("p")) or d["p"] > 100_000:
        raise SummaryFormatError("bad_field", "p must be a partition number")
    if "chunk" in d or "chunks" in d:
        chunks = d.get("chunks")
        if not _is_count(chunks) or not 1 <= chunks <= MAX_CHUNKS:
            raise SummaryFormatError("bad_chunk",
                                     f"chunks must be a whole number in 1..{MAX_CHUNKS}")
        chunk = d.get("chunk")
        if not _is_count(chunk) or chunk >= chunks:
            raise SummaryFormatError("bad_chunk", "chunk must be a whole number below chunks")
    keys, susp = d.get("keys"), d.get("susp")
    if not isinstance(keys, list) or len(keys) > _MAX_LIST:
        raise SummaryFormatError("bad_field", "keys must be a list")
    width = 3 if kind == "kb" else 2
    if not _keys_ok(keys, width):
        _check_keys(keys, width)
    if not isinstance(susp, list) or len(susp) > _MAX_LIST:
        raise SummaryFormatError("bad_field", "susp must be a list")
    groups = d.get("g", [])
    if not isinstance(groups, list) or len(groups) > _MAX_GROUPS:
        raise SummaryFormatError("bad_field", "g must be a list of at most 4096 groups")
    return d


_MAX_COUNT: Final = 2**63


def _keys_ok(keys: list[Any], width: int) -> bool:
    """Whether every ``keys`` entry is ``[label, count...]`` of ``width``, checked column by
    column in C loops (a key batch has a few entries per account of the window: this
    was most of decoding it). Only exact types pass: orjson makes no subclasses, and
    anything it does not accept goes to :func:`_check_keys`, which decides."""
    if not keys:
        return True
    if set(map(type, keys)) != {list} or set(map(len, keys)) != {width}:
        return False
    # Columns through itemgetter, not zip(*keys): that makes an iterator per entry, enough
    # tracked objects to start a collection on every large batch.
    labels = list(map(itemgetter(0), keys))
    if set(map(type, labels)) != {str} or max(map(len, labels)) > 2 * _MAX_VALUE:
        return False
    for i in range(1, width):
        col = list(map(itemgetter(i), keys))
        if set(map(type, col)) != {int} or min(col) < 0 or max(col) >= _MAX_COUNT:
            return False
    return True


def _check_keys(keys: list[Any], width: int) -> None:
    """The entry-by-entry check behind :func:`_keys_ok`: raises for the first bad entry."""
    for e in keys:
        if not (
            isinstance(e, list)
            and len(e) == width
            and isinstance(e[0], str)
            and len(e[0]) <= 2 * _MAX_VALUE
            and all(_is_count(v) for v in e[1:])
        ):
            shape = "[label, n, suspicious]" if width == 3 else "[label, n]"
            raise SummaryFormatError("bad_field", f"keys entries must be {shape}")

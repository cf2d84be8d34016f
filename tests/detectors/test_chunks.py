"""Key batches and window totals that grow with the accounts of a window are split into
chunks of at most ``CHUNK_BYTES``; the per-key stage and campaign assembly count a chunked
window exactly as the whole one, once per (window, source, chunk), and reject malformed
chunk fields with a reason (issue 16: at 1M accounts one key batch passed 64 MiB)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

import detectors.clusterchain as clusterchain
from detectors.assembly import CampaignAssembly
from detectors.clusterchain import LocalClusterStages
from detectors.keycount import KeyCounter
from detectors.summary import (
    CHUNK_BYTES,
    MAX_CHUNKS,
    AccountSummary,
    SummaryFormatError,
    decode,
    encode,
    encode_chunks,
    route,
)


def _summaries(start: float, n: int, seed: int = 1) -> list[AccountSummary]:
    """``n`` accounts with keys of their own (a /24, a card) and shared ones (an ASN of
    ten), every 20th suspicious, plus ten campaign accounts sharing one card."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        keys = [("ip24", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"),
                ("asn", 64500 + i % 10), ("pay", f"card-{i:07d}")]
        susp = i % 20 == 0
        out.append(AccountSummary(f"b{i:07d}", start, keys, 0.7 if susp else rng.random() * 0.3,
                                  False, False, 2, 300, f"org-{i % 97}", {"m": 2},
                                  ["0123456789abcdef"] if susp else []))
    for i in range(10):
        out.append(AccountSummary(f"h{int(start) // 60 % 6}-{i}", start, [("pay", "card-x")],
                                  0.8, True, True, 1, 2000, None, {"m": 1}, []))
    return sorted(out, key=lambda s: s.account_id)


def test_a_window_of_many_accounts_is_split_into_chunks_under_the_budget() -> None:
    (rec,) = route(600.0, 3, _summaries(600.0, 20_000), parts=1, suspicious=0.5).values()
    whole = encode(rec)
    assert len(whole) > 2 * CHUNK_BYTES
    raws = encode_chunks(rec)
    assert len(raws) >= 3
    assert all(len(r) <= CHUNK_BYTES for r in raws)
    recs = [decode(r) for r in raws]
    assert [(r["chunk"], r["chunks"], r["w"], r["p"]) for r in recs] == [
        (i, len(raws), 600.0, 3) for i in range(len(raws))]
    # Nothing lost, nothing repeated, in the same order.
    assert [e for r in recs for e in r["keys"]] == [list(e) for e in rec["keys"]]
    assert [s for r in recs for s in r["susp"]] == rec["susp"]
    # A batch that fits keeps its old bytes: no chunk fields.
    (small,) = route(600.0, 3, _summaries(600.0, 50), parts=1, suspicious=0.5).values()
    assert encode_chunks(small) == [encode(small)]


def _counter_out(raws: list[bytes]) -> list[dict[str, Any]]:
    kc = KeyCounter(window_s=60, cluster_windows=10, sources=1)
    for raw in raws:
        kc.add(decode(raw))
    kc.watermark(0, 660.0)
    return kc.close(part=0)


def test_the_per_key_stage_counts_chunks_as_the_whole_batch() -> None:
    (rec,) = route(600.0, 0, _summaries(600.0, 3000), parts=1, suspicious=0.5).values()
    whole = _counter_out([encode(rec)])
    raws = encode_chunks(rec, budget=8192)
    assert len(raws) > 10
    rng = random.Random(5)
    shuffled = rng.sample(raws, len(raws))  # order across chunks does not matter
    assert _counter_out(raws) == whole == _counter_out(shuffled)
    assert whole[0]["keys"] and whole[0]["susp"]


def _chain_findings(monkeypatch: pytest.MonkeyPatch, budget: int | None) -> list[Any]:
    if budget is None:  # the unchunked path: one record per batch, as before chunks
        monkeypatch.setattr(clusterchain, "encode_chunks", lambda rec: [encode(rec)])
    else:
        monkeypatch.setattr(clusterchain, "encode_chunks",
                            lambda rec: encode_chunks(rec, budget=budget))
    chain = LocalClusterStages(window_s=60, cluster_min_members=5)
    found = []
    for minute in range(12):
        found += chain.window(minute * 60.0, _summaries(minute * 60.0, 1500, seed=minute))
    return [f.to_dict() for f in found]


def test_campaign_assembly_from_chunks_equals_assembly_from_whole_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = _chain_findings(monkeypatch, None)
    assert "cluster_campaign" in {f["detector"] for f in whole}
    # 4 KiB chunks: key batches and window totals (the suspects' summaries) both split.
    assert _chain_findings(monkeypatch, 4096) == whole


def test_a_redelivered_chunk_is_not_counted_twice() -> None:
    (rec,) = route(600.0, 0, _summaries(600.0, 2000), parts=1, suspicious=0.5).values()
    raws = encode_chunks(rec, budget=8192)
    kc = KeyCounter(window_s=60, cluster_windows=10, sources=1)
    assert all(kc.add(decode(r)) for r in raws)
    # Redelivered after a crash: every chunk again, and one of them a third time.
    assert not any(kc.add(decode(r)) for r in [*raws, raws[1]])
    # Another split of the same window (a re-send of different content) never mixes in.
    other = encode_chunks(rec, budget=4096)
    assert len(other) != len(raws)
    assert not any(kc.add(decode(r)) for r in other)
    assert kc.duplicates == len(raws) + 1 + len(other)
    kc.watermark(0, 660.0)
    assert kc.close(part=0) == _counter_out([encode(rec)])
    assert kc.incomplete == 0

    # Campaign assembly: the same for window totals.
    (wt,) = _counter_out([encode(rec)])
    wts = encode_chunks(wt, budget=4096)
    assert len(wts) > 1
    asm = CampaignAssembly(window_s=60, cluster_min_members=5)
    assert all(asm.add(decode(r)) for r in wts)
    assert not any(asm.add(decode(r)) for r in reversed(wts))
    assert asm.duplicates == len(wts)


def test_a_window_closed_with_a_chunk_missing_is_counted() -> None:
    (rec,) = route(600.0, 0, _summaries(600.0, 2000), parts=1, suspicious=0.5).values()
    raws = encode_chunks(rec, budget=8192)
    kc = KeyCounter(window_s=60, cluster_windows=10, sources=1)
    for r in raws[:-1]:
        kc.add(decode(r))
    kc.watermark(0, 660.0)
    assert len(kc.close(part=0)) == 1  # closes on the watermark all the same
    assert kc.incomplete == 1
    (wt,) = _counter_out([encode(rec)])
    asm = CampaignAssembly(window_s=60, cluster_min_members=5)
    asm.add(decode(encode_chunks(wt, budget=4096)[0]))
    asm.watermark(0, 660.0)
    asm.close()
    assert asm.incomplete == 1


_BAD_CHUNKS: list[tuple[Any, Any]] = [
    (2, 2),  # chunk == chunks
    (5, 3),  # chunk > chunks
    (-1, 3),
    (0, 0),
    (0, -4),
    (0, MAX_CHUNKS + 1),
    (0, 10**12),
    (0, 2**64 - 1),
    ("0", 3),
    (0, "3"),
    (0.0, 3),
    (0, 3.0),
    (True, 3),
    (0, True),
    (None, 3),
    (0, None),
    (0, [3]),
    ({"i": 0}, 3),
]


@pytest.mark.parametrize("kind", ["kb", "wt"])
@pytest.mark.parametrize("chunk, chunks", _BAD_CHUNKS)
def test_a_malformed_chunk_is_rejected_with_a_reason(kind: str, chunk: Any, chunks: Any) -> None:
    rec = {"t": kind, "w": 60.0, "p": 0, "chunk": chunk, "chunks": chunks, "keys": [],
           "susp": []}
    with pytest.raises(SummaryFormatError) as err:
        decode(orjson.dumps(rec))
    assert err.value.reason == "bad_chunk"


@pytest.mark.parametrize("field", ["chunk", "chunks"])
def test_half_a_chunk_header_is_rejected(field: str) -> None:
    rec = {"t": "kb", "w": 60.0, "p": 0, field: 1, "keys": [], "susp": []}
    with pytest.raises(SummaryFormatError) as err:
        decode(orjson.dumps(rec))
    assert err.value.reason == "bad_chunk"


def test_good_chunk_fields_decode() -> None:
    for chunk, chunks in [(0, 1), (0, 2), (1, 2), (MAX_CHUNKS - 1, MAX_CHUNKS)]:
        rec = {"t": "kb", "w": 60.0, "p": 0, "chunk": chunk, "chunks": chunks, "keys": [],
               "susp": []}
        assert decode(orjson.dumps(rec))["chunk"] == chunk


def test_an_entry_over_the_budget_goes_alone_and_the_rest_stay_packed() -> None:
    """A swarm group of thousands of members is bigger than a 4 KiB budget by itself: it
    takes one chunk alone; the keys around it are still packed to the budget (an earlier
    split doubled the chunk count until every entry had its own, and ran out of memory at
    1M accounts)."""
    group = {"entity_id": "swarm-1", "members": [f"acct-{i:06d}" for i in range(3000)]}
    rec = {"t": "kb", "w": 0.0, "p": 0, "keys": [[f"ip24:10.0.{i}", 1, 0] for i in range(2000)],
           "susp": [{"a": f"s{i}"} for i in range(50)], "g": [group]}
    raws = encode_chunks(rec, budget=4096)
    whole = len(encode(rec))
    assert len(raws) < 2 * whole / 4096
    big = [orjson.loads(r) for r in raws if len(r) > 4096]
    assert len(big) == 1 and big[0]["g"] == [group] and not big[0]["keys"] + big[0]["susp"]
    parts = [orjson.loads(r) for r in raws]
    assert [e for p in parts for e in p["keys"]] == rec["keys"]
    assert [e for p in parts for e in p["susp"]] == rec["susp"]
    assert [e for p in parts for e in p.get("g", [])] == [group]

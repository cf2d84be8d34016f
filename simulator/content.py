"""What a request carries, vectorised: tokens, prompt fingerprints, statuses, latency,
networks. Benign draws come from the calibrated quantiles; extraction draws from the
campaign's parameters."""

from __future__ import annotations

import numpy as np

from simulator.calibrate import load_calibration
from simulator.tables import (
    CLOUD_ASNS,
    END_TURN,
    MAX_TOKENS,
    RESIDENTIAL_ASNS,
    TOOL_USE,
    Tables,
)

__all__ = [
    "cloud_nets",
    "flip_bits",
    "latency_ms",
    "outcomes",
    "residential_nets",
    "token_draw",
]


def token_draw(rng: np.random.Generator, n: int, which: str, scale: float = 1.0) -> np.ndarray:
    """Input or output token counts from the Azure conversation trace's quantiles, by inverse
    CDF with log-linear interpolation, times ``scale``."""
    q = np.asarray(load_calibration()["azure_conv"][f"{which}_tokens_quantiles"], dtype=float)
    grid = np.linspace(0.0, 1.0, len(q))
    v = np.exp(np.interp(rng.random(n), grid, np.log1p(q))) - 1.0
    return np.maximum(1, np.rint(v * scale)).astype(np.int64)


def flip_bits(
    rng: np.random.Generator, base: np.ndarray, max_flips: int, min_flips: int = 1
) -> np.ndarray:
    """``base`` (uint64) with ``min_flips``..``max_flips`` random bits flipped per element: the
    SimHash of a prompt that differs from its template only in the filled-in slots. (Two
    draws may pick the same bit, so a few flip one bit fewer.)"""
    n = len(base)
    k = rng.integers(min(min_flips, max_flips), max_flips + 1, size=n)
    mask = np.zeros(n, dtype=np.uint64)
    for j in range(max_flips):
        bit = np.left_shift(np.uint64(1), rng.integers(0, 64, size=n).astype(np.uint64))
        mask |= np.where(k > j, bit, np.uint64(0))
    return base ^ mask


def random_u64(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)


def outcomes(
    rng: np.random.Generator,
    n: int,
    out: np.ndarray,
    *,
    rate_limited_share: float,
    error_share: float,
    max_tokens_share: float,
    max_tokens: int | np.ndarray = 4096,
    tool_use_share: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HTTP status, stop reason and final output tokens. Failed requests produce no output
    and no stop reason; ``max_tokens`` stops are cut at the cap."""
    u = rng.random(n)
    status = np.full(n, 200, dtype=np.int64)
    status[u < rate_limited_share] = 429
    err = (u >= rate_limited_share) & (u < rate_limited_share + error_share)
    status[err] = rng.choice(np.array([400, 500, 529]), size=int(err.sum()), p=[0.3, 0.4, 0.3])
    ok = status == 200
    v = rng.random(n)
    stop = np.full(n, END_TURN, dtype=np.int64)
    cap = np.broadcast_to(np.asarray(max_tokens), (n,))
    hit = (v < max_tokens_share) | (out >= cap)
    stop[hit] = MAX_TOKENS
    stop[(~hit) & (v < max_tokens_share + tool_use_share)] = TOOL_USE
    out = np.where(hit, cap, np.minimum(out, cap))
    stop[~ok] = -1
    out = np.where(ok, out, 0)
    return status, stop, out


def latency_ms(rng: np.random.Generator, inp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Time to the last token: a base, prefill and ~15-40 ms per generated token."""
    per_tok = rng.uniform(15.0, 40.0, size=len(out))
    return np.rint(180.0 + 0.04 * inp + per_tok * out + rng.exponential(120.0, len(out)))


def _ips_in(rng: np.random.Generator, n: int, prefixes: np.ndarray) -> np.ndarray:
    """Random host addresses inside the given /24 prefixes (uint32 of x.y.z.0)."""
    return prefixes + rng.integers(2, 254, size=n).astype(np.int64)


def _prefixes(rng: np.random.Generator, n: int) -> np.ndarray:
    # First octet in public unicast ranges, never 10/127/192.
    first = rng.choice(np.array([23, 31, 45, 52, 64, 73, 81, 88, 98, 101, 112, 138, 151, 176,
                                 185, 203]), size=n)
    return (first.astype(np.int64) << 24) | (rng.integers(0, 1 << 16, size=n) << 8)


def residential_nets(
    rng: np.random.Generator, tables: Tables, n: int, countries: list[str]
) -> np.ndarray:
    """One home network per entry: a residential ASN (Zipf-popular), its own /24."""
    w = 1.0 / np.arange(1, len(RESIDENTIAL_ASNS) + 1)
    asns = rng.choice(np.array(RESIDENTIAL_ASNS), size=n, p=w / w.sum())
    return tables.add_nets(_ips_in(rng, n, _prefixes(rng, n)), asns, countries)


def cloud_nets(
    rng: np.random.Generator, tables: Tables, n_asns: int, ips_per_asn: int, country: str = "US"
) -> np.ndarray:
    """A pool of ``n_asns`` cloud/hosting ASNs with ``ips_per_asn`` addresses each, packed
    into a few /24s per ASN (as rented servers and proxies are)."""
    asns = rng.choice(np.array(CLOUD_ASNS), size=n_asns, replace=n_asns > len(CLOUD_ASNS))
    asn_col = np.repeat(asns, ips_per_asn)
    per_asn_prefixes = max(1, ips_per_asn // 30)
    prefixes = _prefixes(rng, n_asns * per_asn_prefixes).reshape(n_asns, per_asn_prefixes)
    pick = rng.integers(0, per_asn_prefixes, size=(n_asns, ips_per_asn))
    pref = np.take_along_axis(prefixes, pick, axis=1).ravel()
    return tables.add_nets(
        _ips_in(rng, len(pref), pref), asn_col, [country] * len(pref)
    )

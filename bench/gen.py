"""A fast generator of realistic request events for the benchmarks.

Realistic means the shape the worker sees in production, not labelled scenarios (that is
:mod:`simulator`): every optional field of the schema, heavy-tailed activity per account
(a few accounts make most requests), multi-turn conversations with errors and 429s, a
popular tool whose users share one system prompt, enterprise batch accounts, and a few
percent of young campaign accounts on hosting networks sending near-duplicate templated
prompts that stop at ``max_tokens``. Payloads are ~500 bytes of JSON, like a gateway's.

Per-event randomness is drawn with numpy up front; the Python loop only builds dicts, so a
million payloads take a few seconds.

>>> acc = accounts(100, seed=1)
>>> evs = list(event_dicts(acc, 50, t0=1_800_000_000.0, span_s=600.0, seed=2))
>>> len(evs), sorted(evs[0])[:3]
(50, ['account_created_ts', 'account_id', 'api_key_id'])
>>> all(evs[i]["ts"] <= evs[i + 1]["ts"] for i in range(49))
True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Accounts", "accounts", "event_dicts"]

_DAY = 86400.0
_MODELS = ("claude-large", "claude-medium", "claude-small", "claude-large-long")
_COUNTRIES = ("US", "DE", "FR", "GB", "IN", "BR", "JP", "SG", "CA", "NL", "KR", "AU")
_UAS = (
    *(f"sdk-{lang}/{v}.{m}" for lang in ("py", "js", "go", "java") for v in (1, 2) for m in (0, 3)),
    "curl/8.5.0",
    "PostmanRuntime/7.36",
)
_TOOL_UA = "codehelper-ide/4.2.1"
_CAMPAIGN_UA = "python-httpx/0.27.0"
_TIERS = ("free", "pro", "enterprise")

# Account kinds.
BENIGN, TOOL, BATCH, CAMPAIGN = 0, 1, 2, 3


@dataclass
class Accounts:
    """Per-account attributes, one list entry per account (index = account number)."""

    ids: list[str]
    kind: np.ndarray
    weight: np.ndarray
    consts: list[dict[str, Any]]


def accounts(n: int, seed: int = 0, campaign_share: float = 0.03) -> Accounts:
    """``n`` accounts: 10% users of one popular tool, 0.5% batch, ``campaign_share`` campaign."""
    rng = np.random.default_rng([seed, 1])
    u = rng.random(n)
    kind = np.full(n, BENIGN)
    kind[u < 0.10] = TOOL
    kind[(u >= 0.10) & (u < 0.105)] = BATCH
    kind[(u >= 0.105) & (u < 0.105 + campaign_share)] = CAMPAIGN
    weight = rng.lognormal(0.0, 1.2, n)
    weight[kind == BATCH] *= 20.0
    weight[kind == CAMPAIGN] = 1.5  # modest and even: under any per-account limit
    age_days = np.where(kind == CAMPAIGN, rng.uniform(1, 20, n), rng.lognormal(5.0, 1.0, n))
    tier = rng.choice(3, n, p=(0.6, 0.3, 0.1))
    asn = np.where(kind == CAMPAIGN, rng.choice([16509, 14061, 24940], n),
                   rng.integers(1000, 60000, n))
    ip_hi = rng.integers(1, 223, n)
    ip_lo = rng.integers(0, 1 << 24, n)
    country = rng.integers(0, len(_COUNTRIES), n)
    ua = rng.integers(0, len(_UAS), n)
    pay = rng.integers(0, 1 << 48, n)
    camp_pay = rng.integers(0, 40, n)
    sysfp = rng.integers(0, 1 << 63, n)
    tool_sysfp = f"{int(rng.integers(0, 1 << 63)):016x}"
    camp_sysfp = f"{int(rng.integers(0, 1 << 63)):016x}"
    now = 1_800_000_000.0
    ids, consts = [], []
    for i in range(n):
        k = int(kind[i])
        aid = f"acct_{seed:02x}{i:08x}"
        ids.append(aid)
        if k == CAMPAIGN:
            ip = f"45.{(i >> 8) % 4 + 10}.{i % 256}.{ip_lo[i] % 250 + 1}"
            ua_s, payfp = _CAMPAIGN_UA, f"pm_c{int(camp_pay[i]):04x}"
            sp, org = camp_sysfp, f"org_{aid[5:]}"
        else:
            lo = int(ip_lo[i])
            ip = f"{int(ip_hi[i])}.{lo >> 16}.{(lo >> 8) & 255}.{lo & 255}"
            ua_s = _TOOL_UA if k == TOOL else _UAS[int(ua[i])]
            payfp = f"pm_{int(pay[i]):012x}"
            sp = tool_sysfp if k == TOOL else (f"{int(sysfp[i]):016x}" if i % 3 else None)
            org = f"org_batch{i % 7}" if k == BATCH else f"org_{aid[5:]}"
        c: dict[str, Any] = {
            "account_id": aid,
            "org_id": org,
            "api_key_id": f"{aid}-k1",
            "ip": ip,
            "asn": int(asn[i]),
            "country": _COUNTRIES[int(country[i])],
            "user_agent": ua_s,
            "payment_fingerprint": payfp,
            # Relative to ``now``; event_dicts shifts it to the run's clock.
            "account_created_ts": round(now - float(age_days[i]) * _DAY),
            "tier": "free" if k == CAMPAIGN else _TIERS[int(tier[i])],
        }
        if sp is not None:
            c["system_prompt_fingerprint"] = sp
        consts.append(c)
    return Accounts(ids, kind, weight, consts)


def event_dicts(
    acc: Accounts,
    n: int,
    *,
    t0: float,
    span_s: float,
    seed: int = 0,
    only: np.ndarray | None = None,
    id_prefix: str = "e",
) -> Iterator[dict[str, Any]]:
    """``n`` events sorted by ``ts`` in ``[t0, t0 + span_s)``; accounts drawn by weight.

    ``only`` restricts the draw to those account numbers (uniformly): the state benchmark
    uses it to make every account active.
    """
    rng = np.random.default_rng([seed, 2])
    if only is None:
        p = acc.weight / acc.weight.sum()
        who = rng.choice(len(acc.ids), n, p=p)
    else:
        who = only[rng.integers(0, len(only), n)] if len(only) != n else only.copy()
    ts = np.sort(rng.uniform(t0, t0 + span_s, n))
    shift = t0 + span_s - 1_800_000_000.0
    model = rng.choice(len(_MODELS), n, p=(0.4, 0.35, 0.2, 0.05)).tolist()
    inp = rng.lognormal(6.0, 1.0, n).astype(np.int64).tolist()
    out = rng.lognormal(5.5, 1.0, n).astype(np.int64).tolist()
    st = rng.random(n).tolist()
    turn = rng.geometric(0.45, n).tolist()
    lat = np.round(rng.lognormal(7.0, 0.6, n), 1).tolist()
    fp = rng.integers(0, 1 << 63, n).tolist()
    bit_a = rng.integers(0, 64, n).tolist()
    bit_b = rng.integers(0, 64, n).tolist()
    kinds = acc.kind[who].tolist()
    who_l = who.tolist()
    ts_l = np.round(ts, 3).tolist()
    ids, consts = acc.ids, acc.consts
    templates = [int(x) for x in rng.integers(0, 1 << 63, 8)]
    for i in range(n):
        a = who_l[i]
        k = kinds[i]
        d = dict(consts[a])
        d["account_created_ts"] = d["account_created_ts"] + round(shift)
        d["event_id"] = f"{id_prefix}{i:x}"
        d["ts"] = ts_l[i]
        d["model"] = _MODELS[model[i]]
        d["input_tokens"] = inp[i]
        s = st[i]
        if k == CAMPAIGN:
            tpl = templates[a % 8]
            d["prompt_fingerprint"] = f"{tpl ^ (1 << bit_a[i]) ^ (1 << bit_b[i]):016x}"
            maxed = s < 0.6
            d["output_tokens"] = 4096 if maxed else out[i] * 4
            d["stop_reason"] = "max_tokens" if maxed else "end_turn"
            d["turn"] = 1
            d["conversation_id"] = f"cv_{ids[a][5:]}_{i:x}"
        else:
            d["prompt_fingerprint"] = f"{fp[i]:016x}"
            d["output_tokens"] = out[i]
            d["stop_reason"] = "max_tokens" if s < 0.03 else "end_turn"
            d["turn"] = turn[i]
            d["conversation_id"] = f"cv_{ids[a][5:]}_{(i >> 4) % 64:x}"
        d["status"] = 429 if s > 0.98 else (500 if s > 0.97 else 200)
        d["latency_ms"] = lat[i]
        yield d

"""A first, simple traffic generator for ``distillwatch demo``: benign accounts with Poisson
traffic, one account that ramps 20x, and a small hydra: a few dozen young accounts sharing
cards, a /24 and a prompt template, each quieter than an ordinary user, joining one by one.
(``distillwatch simulate`` is the realistic one.)"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["HYDRA_PREFIX", "RAMP_ACCOUNT", "demo_events", "hydra_events"]

HYDRA_PREFIX = "acct-h"

RAMP_ACCOUNT = "acct-ramp-0001"


def hydra_events(
    start: float,
    *,
    members: int = 36,
    after_s: float = 60.0,
    grow_s: float = 90.0,
    rate: float = 0.05,
    seed: int = 7,
) -> Iterator[dict[str, Any]]:
    """The campaign this product exists to catch, in time order, forever.

    ``members`` accounts created two days ago join one by one between ``after_s`` and
    ``after_s + grow_s``; each then sends ``rate`` requests/s (a quarter of an ordinary
    demo user: no per-account limit or detector sees it) of harvest-like, single-turn,
    templated requests from one /24, with three shared cards and one client."""
    rng = random.Random(seed)
    template = rng.getrandbits(64)
    due = [(start + after_s + grow_s * i / members + rng.expovariate(rate), i)
           for i in range(members)]
    heapq.heapify(due)
    while due:
        t, i = heapq.heappop(due)
        fp = template
        for bit in rng.sample(range(64), rng.randint(0, 3)):
            fp ^= 1 << bit  # near-duplicates of one prompt template
        acct = f"{HYDRA_PREFIX}{i:03d}"
        yield {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "account_id": acct,
            "ts": t,
            "model": "claude-demo",
            "input_tokens": 300,
            "output_tokens": int(rng.uniform(2500, 4096)),
            "org_id": f"org-{acct}",
            "ip": f"203.0.113.{i % 50 + 1}",
            "asn": 64500,
            "user_agent": "python-httpx/0.27.0",
            "payment_fingerprint": f"card-{i % 3}",
            "account_created_ts": start - 2 * 86400,
            "tier": "free",
            "status": 200,
            "stop_reason": "max_tokens" if rng.random() < 0.5 else "end_turn",
            "conversation_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "turn": 1,
            "prompt_fingerprint": f"{fp:016x}",
        }
        heapq.heappush(due, (t + rng.expovariate(rate), i))


def demo_events(
    start: float,
    *,
    accounts: int = 300,
    hydra: int = 36,
    rate_per_account: float = 0.2,
    ramp_base_rate: float = 2.0,
    ramp_after_s: float = 45.0,
    ramp_factor: float = 20.0,
    seed: int = 1,
) -> Iterator[dict[str, Any]]:
    """Events in time order from ``start``, forever: Poisson arrivals per account (merged as
    one Poisson stream of the total rate). The ramp account is a busy customer
    (``ramp_base_rate`` requests/s) whose rate is multiplied by ``ramp_factor`` once
    ``ramp_after_s`` seconds have passed. ``hydra`` accounts form a campaign
    (:func:`hydra_events`; 0 = none)."""
    ordinary = _ordinary(start, accounts, rate_per_account, ramp_base_rate, ramp_after_s,
                         ramp_factor, seed)
    if hydra <= 0:
        return ordinary
    return heapq.merge(ordinary, hydra_events(start, members=hydra), key=lambda e: e["ts"])


def _ordinary(
    start: float,
    accounts: int,
    rate_per_account: float,
    ramp_base_rate: float,
    ramp_after_s: float,
    ramp_factor: float,
    seed: int,
) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    ids = [f"acct-{i:04d}" for i in range(accounts)]
    tiers = ["free", "pro", "enterprise"]
    t = start
    benign = rate_per_account * accounts
    while True:
        ramp_rate = ramp_base_rate * (ramp_factor if t - start >= ramp_after_s else 1.0)
        rate = benign + ramp_rate
        t += rng.expovariate(rate)
        pick_ramp = rng.random() < ramp_rate / rate
        acct = RAMP_ACCOUNT if pick_ramp else ids[rng.randrange(accounts)]
        ev = {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "account_id": acct,
            "ts": t,
            "model": "claude-demo",
            "input_tokens": int(rng.lognormvariate(6.0, 1.0)),
            "output_tokens": int(rng.lognormvariate(5.5, 0.8)),
            "tier": tiers[sum(map(ord, acct)) % 3],
            "status": 200 if rng.random() > 0.02 else 429,
            "stop_reason": "end_turn",
            "conversation_id": f"{acct}-c{rng.randrange(20)}",
            "turn": rng.randint(1, 6),
        }
        if acct == RAMP_ACCOUNT:
            # Harvesting looks like this: single-turn, long answers often cut at max_tokens.
            ev["output_tokens"] = int(rng.uniform(2500, 4096))
            ev["stop_reason"] = "max_tokens" if rng.random() < 0.6 else "end_turn"
            ev["conversation_id"] = uuid.UUID(int=rng.getrandbits(128)).hex
            ev["turn"] = 1
        yield ev

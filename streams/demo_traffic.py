"""A first, simple traffic generator for ``distillwatch demo``: benign accounts with Poisson
traffic and one account that ramps 20x. (``distillwatch simulate`` is the realistic one.)"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["RAMP_ACCOUNT", "demo_events"]

RAMP_ACCOUNT = "acct-ramp-0001"


def demo_events(
    start: float,
    *,
    accounts: int = 300,
    rate_per_account: float = 0.2,
    ramp_after_s: float = 45.0,
    ramp_factor: float = 20.0,
    seed: int = 1,
) -> Iterator[dict[str, Any]]:
    """Events in time order from ``start``, forever: Poisson arrivals per account (merged as
    one Poisson stream of the total rate), the ramp account's rate multiplied by
    ``ramp_factor`` once ``ramp_after_s`` seconds have passed."""
    rng = random.Random(seed)
    ids = [f"acct-{i:04d}" for i in range(accounts)]
    tiers = ["free", "pro", "enterprise"]
    t = start
    total = rate_per_account * (accounts + 1)
    while True:
        ramped = t - start >= ramp_after_s
        rate = total + (rate_per_account * (ramp_factor - 1) if ramped else 0.0)
        t += rng.expovariate(rate)
        if rng.random() < rate_per_account * (ramp_factor if ramped else 1.0) / rate:
            acct = RAMP_ACCOUNT
        else:
            acct = ids[rng.randrange(accounts)]
        yield {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "account_id": acct,
            "ts": t,
            "model": "claude-demo",
            "input_tokens": int(rng.lognormvariate(6.0, 1.0)),
            "output_tokens": int(rng.lognormvariate(5.5, 0.8)),
            "tier": tiers[hash(acct) % 3],
            "status": 200 if rng.random() > 0.02 else 429,
        }

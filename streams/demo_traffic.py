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
    ramp_base_rate: float = 2.0,
    ramp_after_s: float = 45.0,
    ramp_factor: float = 20.0,
    seed: int = 1,
) -> Iterator[dict[str, Any]]:
    """Events in time order from ``start``, forever: Poisson arrivals per account (merged as
    one Poisson stream of the total rate). The ramp account is a busy customer
    (``ramp_base_rate`` requests/s) whose rate is multiplied by ``ramp_factor`` once
    ``ramp_after_s`` seconds have passed."""
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

"""Small synthetic event lists for detector tests (the simulator has the realistic ones)."""

from __future__ import annotations

import random

from detectors.events import Event

DAY = 86400.0
T0 = 100 * DAY


def hydra(
    n: int = 200,
    hours: float = 3.0,
    seed: int = 1,
    prefix: str = "h",
    start: float = T0,
    org: str | None = None,
    age_days: float = 5.0,
) -> list[Event]:
    """``n`` young accounts, one templated long single-turn request per hour each, on a few
    cloud /24s and cards."""
    rng = random.Random(seed)
    base = rng.getrandbits(64)
    out = []
    for i in range(n):
        phase = rng.uniform(0, 3600)
        t = start + phase
        while t < start + hours * 3600:
            fp = base
            for bit in rng.sample(range(64), rng.randint(0, 4)):
                fp ^= 1 << bit
            out.append(
                Event(
                    f"{prefix}{i}",
                    t,
                    "m",
                    300,
                    int(rng.lognormvariate(7.5, 0.3)),
                    event_id=f"{prefix}{i}-{t:.0f}",
                    org_id=org or f"org-{prefix}{i}",
                    ip=f"10.{i % 3}.7.{i % 200}",
                    asn=64500 + i % 3,
                    user_agent="python-httpx/0.27.0",
                    payment_fingerprint=f"card-{i % 4}",
                    account_created_ts=start - age_days * DAY,
                    tier="free",
                    status=200,
                    stop_reason="max_tokens" if rng.random() < 0.35 else "end_turn",
                    turn=1,
                    prompt_fingerprint=f"{fp:016x}",
                )
            )
            t += 3600 * rng.uniform(0.95, 1.05)
    return out


def benign(
    n: int = 300,
    hours: float = 3.0,
    seed: int = 2,
    start: float = T0,
    system_prompt: str | None = None,
) -> list[Event]:
    """Chat users: sessions of multi-turn conversations, diverse prompts and networks."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = start + rng.uniform(0, 3600)
        while t < start + hours * 3600:
            turns = rng.randint(1, 6)
            for turn in range(1, turns + 1):
                out.append(
                    Event(
                        f"b{i}",
                        t,
                        "m",
                        rng.randint(50, 3000),
                        rng.randint(50, 900),
                        event_id=f"b{i}-{t:.3f}",
                        org_id=f"org-b{i}",
                        ip=f"{20 + i % 200}.{i}.{i % 7}.9",
                        asn=7000 + i % 40,
                        user_agent=f"client/{i % 5}",
                        payment_fingerprint=f"pay-b{i}",
                        account_created_ts=start - rng.uniform(60, 900) * DAY,
                        tier="pro",
                        status=200,
                        stop_reason="end_turn",
                        turn=turn,
                        system_prompt_fingerprint=system_prompt,
                        prompt_fingerprint=f"{rng.getrandbits(64):016x}",
                    )
                )
                t += rng.expovariate(1 / 45)
            t += rng.expovariate(1 / 2400)
    return out


def merged(*streams: list[Event]) -> list[Event]:
    return sorted((e for s in streams for e in s), key=lambda e: e.ts)

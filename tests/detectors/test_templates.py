from __future__ import annotations

import random

from detectors.templates import TemplateIndex


def _flip(rng: random.Random, base: int, k: int) -> int:
    for bit in rng.sample(range(64), k):
        base ^= 1 << bit
    return base


def test_group_needs_several_accounts_and_then_keeps_its_id():
    rng = random.Random(2)
    base = rng.getrandbits(64)
    idx = TemplateIndex(min_accounts=4, max_bits=10)
    # One account repeating its own template founds nothing.
    for _ in range(10):
        idx.add(_flip(rng, base, 2), "solo")
    assert idx.promote() == {}
    idx.end_window()
    for i in range(6):
        idx.add(_flip(rng, base, rng.randint(0, 4)), f"a{i}")
    founded = idx.promote()
    assert len(set(founded.values())) == 1 and len(founded) >= 4
    gid = next(iter(founded.values()))
    idx.end_window()
    # Fresh accounts (replacements of banned ones) using the same template: same group id.
    hits = [idx.lookup(_flip(rng, base, rng.randint(0, 4))) for _ in range(50)]
    assert sum(h == gid for h in hits) >= 45
    assert idx.lookup(rng.getrandbits(64)) is None


def test_prune_forgets_old_groups():
    rng = random.Random(3)
    base = rng.getrandbits(64)
    idx = TemplateIndex(min_accounts=2)
    idx.add(base, "a")
    idx.add(base ^ 1, "b")
    idx.promote(ts=100.0)
    assert idx.groups == 1
    assert idx.prune(before=50.0) == 0
    assert idx.prune(before=200.0) == 1
    assert idx.lookup(base) is None

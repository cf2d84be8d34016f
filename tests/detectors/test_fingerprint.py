from __future__ import annotations

import random
import string

from detectors.fingerprint import (
    band_keys,
    fingerprint_int,
    hamming,
    normalize_prompt,
    prompt_fingerprint,
)

TEMPLATE = (
    "You are a careful expert. Think step by step and explain in detail the topic {a} in the "
    "context of {b}, then give a final answer about {c} with worked examples and {d}."
)


def _words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(n)]


def test_filled_templates_are_near_unrelated_prompts_are_far():
    rng = random.Random(3)
    vocab = _words(rng, 500)
    near, far = [], []
    for _ in range(100):
        a = TEMPLATE.format(**{k: rng.choice(vocab) for k in "abcd"})
        b = TEMPLATE.format(**{k: rng.choice(vocab) for k in "abcd"})
        near.append(hamming(prompt_fingerprint(a), prompt_fingerprint(b)))
        far.append(
            hamming(
                prompt_fingerprint(" ".join(rng.sample(vocab, 35))),
                prompt_fingerprint(" ".join(rng.sample(vocab, 35))),
            )
        )
    near.sort()
    far.sort()
    assert near[len(near) // 2] <= 12
    assert far[len(far) // 2] >= 26
    assert near[90] < far[10]


def test_normalisation_ignores_case_punctuation_and_numbers():
    assert normalize_prompt("Order #123: SHIP it!") == ["order", "0", "ship", "it"]
    assert prompt_fingerprint("Order #123: SHIP it!") == prompt_fingerprint("order 9 ship it")
    fp = prompt_fingerprint("anything at all")
    assert len(fp) == 16 and int(fp, 16) >= 0


def test_three_flipped_bits_always_share_a_band():
    rng = random.Random(5)
    for _ in range(200):
        x = rng.getrandbits(64)
        y = x
        for bit in rng.sample(range(64), 3):
            y ^= 1 << bit
        assert set(band_keys(x)) & set(band_keys(y))


def test_bad_fingerprint_is_ignored_not_raised():
    assert fingerprint_int("not-hex") is None
    assert fingerprint_int("ffffffffffffffffff") == 0xFFFFFFFFFFFFFFFF

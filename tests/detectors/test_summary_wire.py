"""decode's column-wise check of key entries accepts and rejects exactly what the
entry-by-entry check does (it falls back to it for anything unusual)."""

from __future__ import annotations

import random
import re
from typing import Any

import orjson
import pytest

from detectors.summary import SummaryFormatError, decode

_GOOD: list[Any] = ["asn:1", 0, 1, 2**63 - 1, "x" * 2048]
_BAD: list[Any] = [-1, 2**63, True, 1.0, None, "x" * 2049, [], {}, "", 3]


def _entry(rng: random.Random, width: int) -> Any:
    if rng.random() < 0.9:
        return [rng.choice(["asn:1", "", "x" * 2048]), *(rng.choice([0, 5, 2**63 - 1])
                                                     for _ in range(width - 1))]
    shape = rng.choice(["short", "long", "value", "notlist"])
    if shape == "notlist":
        return rng.choice(["asn:1", 3, None, {"a": 1}])
    e = [rng.choice(_GOOD) for _ in range(width + (shape == "long") - (shape == "short"))]
    if e and shape == "value":
        e[rng.randrange(len(e))] = rng.choice(_BAD)
    return e


def _slow_ok(keys: list[Any], width: int) -> bool:
    # The check decode made entry by entry before the column-wise one.
    return all(
        isinstance(e, list) and len(e) == width and isinstance(e[0], str)
        and len(e[0]) <= 2048
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
                for v in e[1:])
        for e in keys
    )


@pytest.mark.parametrize("kind, width", [("kb", 3), ("wt", 2)])
def test_key_entries_checked_as_before(kind: str, width: int) -> None:
    rng = random.Random(16)
    for _ in range(3000):
        keys = [_entry(rng, width) for _ in range(rng.choice([0, 1, 2, 5]))]
        raw = orjson.dumps({"t": kind, "w": 60.0, "p": 0, "keys": keys, "susp": []})
        if _slow_ok(keys, width):
            assert decode(raw)["keys"] == keys
        else:
            shape = "[label, n, suspicious]" if width == 3 else "[label, n]"
            msg = re.escape(f"bad_field: keys entries must be {shape}")
            with pytest.raises(SummaryFormatError, match=msg):
                decode(raw)

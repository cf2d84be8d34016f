"""Prompt fingerprints: normalise a prompt, hash it to a 64-bit SimHash, print 16 hex chars.

Gateways call :func:`prompt_fingerprint` on the user prompt and send the result as the
event's ``prompt_fingerprint``; the prompt text never leaves the gateway. Two prompts that
differ in a few words (a template with its slots filled) get fingerprints a few bits apart,
unrelated prompts differ in about 32 of 64 bits, so the Hamming distance is a cheap
near-duplicate test that detectors run on fingerprints alone.

Normalisation: Unicode NFKC, lower case, every run of digits becomes ``0`` (numbers are the
most common template slot), punctuation dropped, whitespace collapsed. Features: word
unigrams plus word bigrams (bigrams keep word order), each hashed with BLAKE2b to 64 bits.

Examples
--------
>>> a = prompt_fingerprint("Explain step by step how photosynthesis works. Answer 1.")
>>> b = prompt_fingerprint("Explain step by step how respiration works. Answer 2.")
>>> c = prompt_fingerprint("Write a haiku about autumn leaves falling on a quiet pond")
>>> len(a), hamming(a, b) < hamming(a, c)
(16, True)
>>> prompt_fingerprint("  Hello,   WORLD 42 ") == prompt_fingerprint("hello world 7")
True
>>> band_keys("0123456789abcdef")
(52719, 100779, 148839, 196899)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from itertools import pairwise
from typing import Final

import numpy as np

__all__ = [
    "BANDS",
    "band_keys",
    "fingerprint_int",
    "hamming",
    "normalize_prompt",
    "prompt_fingerprint",
    "simhash64",
]

#: Number of 16-bit bands a fingerprint is cut into for LSH look-ups. Two fingerprints at
#: Hamming distance <= 3 always share a band (pigeonhole), so a band index finds them.
BANDS: Final = 4
_BAND_BITS: Final = 64 // BANDS
_BAND_MASK: Final = (1 << _BAND_BITS) - 1

_DIGITS = re.compile(r"\d+")
_WORDS = re.compile(r"\w+")


def normalize_prompt(text: str) -> list[str]:
    """Normalised word tokens of ``text``.

    >>> normalize_prompt("Call me at 555-1234, OK?")
    ['call', 'me', 'at', '0', '0', 'ok']
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _DIGITS.sub("0", text)
    return _WORDS.findall(text)


@lru_cache(maxsize=65536)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def simhash64(tokens: list[str]) -> int:
    """64-bit SimHash of word unigrams and bigrams (each feature weight 1).

    >>> simhash64([]) == 0
    True
    """
    feats = list(tokens)
    feats.extend(f"{a} {b}" for a, b in pairwise(tokens))
    if not feats:
        return 0
    hashes = np.fromiter((_token_hash(f) for f in feats), dtype=np.uint64, count=len(feats))
    # One row of 64 bits per feature; a set bit votes +1, a clear bit -1.
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    votes = bits.sum(axis=0, dtype=np.int64) * 2 > len(feats)
    return int.from_bytes(np.packbits(votes, bitorder="little").tobytes(), "little")


def prompt_fingerprint(text: str) -> str:
    """The 16-hex-character fingerprint of one prompt (what gateways send)."""
    return f"{simhash64(normalize_prompt(text)):016x}"


def fingerprint_int(fp: str) -> int | None:
    """Parse a fingerprint; None when it is not hex (then detectors ignore it).

    >>> fingerprint_int("ff"), fingerprint_int("zz")
    (255, None)
    """
    try:
        return int(fp, 16) & 0xFFFFFFFFFFFFFFFF
    except ValueError:
        return None


def hamming(a: str | int, b: str | int) -> int:
    """Differing bits between two fingerprints (hex strings or ints)."""
    x = int(a, 16) if isinstance(a, str) else a
    y = int(b, 16) if isinstance(b, str) else b
    return (x ^ y).bit_count()


def band_keys(fp: str | int) -> tuple[int, ...]:
    """LSH band keys of a fingerprint: band index in the top bits, band value below, so
    equal keys mean one identical 16-bit band."""
    x = int(fp, 16) if isinstance(fp, str) else fp
    return tuple((i << _BAND_BITS) | ((x >> (i * _BAND_BITS)) & _BAND_MASK) for i in range(BANDS))

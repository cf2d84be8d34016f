"""Vectorised text rendering: build many variable-length lines at once with numpy.

Each segment of a line is a ``(bytes matrix, lengths)`` pair: row ``i`` contributes the first
``lengths[i]`` bytes of ``matrix[i]``, and the rest of the row is NUL. Stacking the segments
side by side and dropping the NULs (row-major) yields the lines back to back. Formatting
one Python string per event measured ~6.5 us a line on the development VM; this ~2.5 us.

>>> import numpy as np
>>> segs = [const(b"{", 2), decimal(np.array([7, 1234])), lookup([b"", b',"x":1'],
...         np.array([1, 0])), const(b"}\\n", 2)]
>>> join(segs)
b'{7,"x":1}\\n{1234}\\n'
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "Joiner",
    "Segment",
    "const",
    "decimal",
    "fixed_decimal",
    "hex64",
    "join",
    "lookup",
    "table",
    "when",
]

Segment = tuple[np.ndarray, np.ndarray]

def const(text: bytes, n: int) -> Segment:
    row = np.frombuffer(text, dtype=np.uint8)
    return np.broadcast_to(row, (n, len(row))), np.full(n, len(row))


def table(items: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """A lookup table: NUL-padded byte matrix and lengths."""
    lens = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    width = int(lens.max()) if len(items) and lens.max() > 0 else 1
    mat = np.zeros((len(items), width), dtype=np.uint8)
    flat = np.frombuffer(b"".join(items), dtype=np.uint8)
    if len(flat):
        rows = np.repeat(np.arange(len(items)), lens)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
        mat[rows, cols] = flat
    return mat, lens


def lookup(items: list[bytes] | tuple[np.ndarray, np.ndarray], idx: np.ndarray) -> Segment:
    mat, lens = table(items) if isinstance(items, list) else items
    return mat[idx], lens[idx]


_POW10 = 10 ** np.arange(19, dtype=np.int64)
# "0000".."9999" and "00".."ff" as byte rows: digits come from table lookups, not per-digit
# division, which is several times faster in numpy.
_DEC4 = np.frombuffer(b"".join(b"%04d" % i for i in range(10_000)), dtype=np.uint8).reshape(
    10_000, 4
)
_HEX2 = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint8).reshape(256, 2)


def _digits(v: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of ``v`` as an (n, width) byte matrix."""
    groups = -(-width // 4)
    parts = [_DEC4[(v // _POW10[4 * g]) % 10_000] for g in range(groups - 1, -1, -1)]
    mat = np.concatenate(parts, axis=1) if groups > 1 else parts[0]
    return mat[:, 4 * groups - width :]


def decimal(v: np.ndarray, width: int = 12, present: np.ndarray | None = None) -> Segment:
    """Non-negative integers in decimal, no padding (at most ``width`` digits)."""
    v = np.asarray(v, dtype=np.int64)
    # Zero-padded digits whose leading zeros become NUL (dropped when joined); the last
    # digit always stays so 0 prints as "0".
    keep = v[:, None] >= _POW10[width - 1 :: -1][None, :]
    keep[:, -1] = True
    if present is not None:
        keep &= present[:, None]
    mat = _digits(v, width) * keep
    return mat, keep.sum(axis=1)


def fixed_decimal(v: np.ndarray, width: int) -> Segment:
    """Non-negative integers zero-padded to ``width`` digits."""
    v = np.asarray(v, dtype=np.int64)
    return _digits(v, width), np.full(len(v), width)


def hex64(v: np.ndarray, width: int = 16, present: np.ndarray | None = None) -> Segment:
    """Unsigned integers as ``width`` (even, <= 16) lower-case hex digits, zero-padded."""
    v = np.ascontiguousarray(np.asarray(v).astype(">u8"))
    by = v.view(np.uint8).reshape(len(v), 8)[:, 8 - width // 2 :]
    mat = _HEX2[by].reshape(len(v), width)
    if present is None:
        return mat, np.full(len(v), width)
    return mat * present[:, None].astype(np.uint8), np.where(present, width, 0)


def when(seg: Segment, present: np.ndarray) -> Segment:
    """``seg`` only where ``present``; nothing elsewhere."""
    return seg[0] * present[:, None].astype(np.uint8), np.where(present, seg[1], 0)


class Joiner:
    """:func:`join` with a reused buffer: across chunks of the same shape, constant segments
    are written once and no fresh memory is page-faulted for the matrix."""

    def __init__(self) -> None:
        self._key: tuple[int, ...] | None = None
        self._out = np.empty((0, 0), dtype=np.uint8)

    def __call__(self, segments: list[Segment]) -> bytes:
        """The joined lines."""
        n = len(segments[0][1])
        widths = [m.shape[1] for m, _ in segments]
        key = (n, *widths)
        fresh = key != self._key
        if fresh:
            self._key = key
            self._out = np.empty((n, sum(widths)), dtype=np.uint8)
        out = self._out
        col = 0
        for mat, _ in segments:
            w = mat.shape[1]
            if fresh or mat.strides[0] != 0:
                out[:, col : col + w] = mat
            col += w
        # Unused bytes are NUL (segments pad with zeros, JSON text never contains one):
        # dropping them with bytes.translate is ~3x faster than a numpy mask + compress.
        return out.tobytes().translate(None, b"\0")


def join(segments: list[Segment]) -> bytes:
    """Concatenate segment by segment, row by row."""
    return Joiner()(segments)

"""Benchmark scripts: they print numbers, they assert nothing (see bench/README.md).

Run from the repository root, e.g. ``python -m bench.throughput --events 200000``.
"""

from __future__ import annotations

__all__: list[str] = []

"""distillwatch detectors: pure Python (River-style), no Kafka, no Faust.

The data's path: :mod:`~detectors.events` → :mod:`~detectors.windows` (per-event counters)
→ :mod:`~detectors.features` → per account :mod:`~detectors.baseline` (built on
:mod:`~detectors.rate`) and :mod:`~detectors.population`, per cluster key
:mod:`~detectors.keys`, :mod:`~detectors.templates` and :mod:`~detectors.clusters` →
:mod:`~detectors.findings` → :mod:`~detectors.alerts`. :mod:`~detectors.pipeline` wires them
for both the streaming worker and offline replay. :mod:`~detectors.fingerprint` is the prompt
fingerprint gateways compute. Detector names and runbooks: ``docs/detectors.md``.
"""

from __future__ import annotations

from detectors.events import Event, InvalidEvent, parse_event
from detectors.findings import Finding
from detectors.fingerprint import prompt_fingerprint
from detectors.pipeline import Detection, Monitor
from detectors.rate import RateDetector

__all__ = [
    "Detection",
    "Event",
    "Finding",
    "InvalidEvent",
    "Monitor",
    "RateDetector",
    "parse_event",
    "prompt_fingerprint",
]

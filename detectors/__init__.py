"""distillwatch detectors: pure Python (River inside), no Kafka, no Faust.

The data's path: :mod:`~detectors.events` → :mod:`~detectors.windows` →
:mod:`~detectors.features` → detectors (:mod:`~detectors.rate`, :mod:`~detectors.baseline`)
→ :mod:`~detectors.findings` → :mod:`~detectors.alerts`. :mod:`~detectors.pipeline` wires them
for both the streaming worker and offline replay.
"""

from __future__ import annotations

from detectors.events import Event, InvalidEvent, parse_event
from detectors.findings import Finding
from detectors.pipeline import Detection, Monitor

__all__ = ["Detection", "Event", "Finding", "InvalidEvent", "Monitor", "parse_event"]

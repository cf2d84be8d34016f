"""Faust's own sensor data (commits, rebalances, sends, offsets) as Prometheus metrics.

faust ships ``faust.sensors.prometheus``, but it builds metric names from the app id at run
time (``{app}_events_runtime_ms``), measures in milliseconds and serves them from Faust's web
server, which the worker disables. This monitor keeps Faust's bookkeeping (it subclasses
:class:`faust.sensors.Monitor`) and adds fixed ``distillwatch_faust_*`` names in seconds on
the worker's own registry. Offsets are read at scrape time by a collector, so partitions
that a rebalance took away disappear with Faust's own state instead of going stale.

Label values are topic names from the configuration (plus Faust's internal topics) and
partition numbers: small fixed sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import faust
from faust.sensors import Monitor
from faust.types import TP, Message, PendingMessage, RecordMetadata
from faust.types.transports import ConsumerT, ProducerT
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["FaustMetrics", "PrometheusMonitor", "install"]

# Commits, sends and rebalances: milliseconds on a healthy cluster, seconds when it is not.
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class FaustMetrics(NamedTuple):
    messages_received: Counter
    messages_sent: Counter
    send_errors: Counter
    send_latency: Histogram
    commit_latency: Histogram
    rebalances: Counter
    rebalance_latency: Histogram
    assignments: Counter
    topic_buffer_full: Counter

    @classmethod
    def create(
        cls, registry: CollectorRegistry, prefix: str = "distillwatch_faust"
    ) -> FaustMetrics:
        m = cls(
            messages_received=Counter(
                f"{prefix}_messages_received",
                "Messages the Faust consumer handed to streams, by topic",
                ["topic"],
                registry=registry,
            ),
            messages_sent=Counter(
                f"{prefix}_messages_sent",
                "Messages handed to the Faust producer, by topic",
                ["topic"],
                registry=registry,
            ),
            send_errors=Counter(
                f"{prefix}_send_errors", "Producer sends that failed", registry=registry
            ),
            send_latency=Histogram(
                f"{prefix}_send_latency_seconds",
                "Time from producer buffer to broker acknowledgement",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            commit_latency=Histogram(
                f"{prefix}_commit_latency_seconds",
                "Time an offset commit took",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            rebalances=Counter(
                f"{prefix}_rebalances", "Consumer group rebalances started", registry=registry
            ),
            rebalance_latency=Histogram(
                f"{prefix}_rebalance_seconds",
                "Time from rebalance start to the worker processing again (incl. recovery)",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            assignments=Counter(
                f"{prefix}_assignments",
                "Partition assignments, by result",
                ["result"],
                registry=registry,
            ),
            topic_buffer_full=Counter(
                f"{prefix}_topic_buffer_full",
                "Times a topic buffer was full and the consumer had to wait, by topic",
                ["topic"],
                registry=registry,
            ),
        )
        for result in ("completed", "error"):
            m.assignments.labels(result)
        return m


class PrometheusMonitor(Monitor):
    """Faust's :class:`~faust.sensors.Monitor` that also updates :class:`FaustMetrics`."""

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        super().on_message_in(tp, offset, message)
        self.metrics.messages_received.labels(tp.topic).inc()

    def on_topic_buffer_full(self, tp: TP) -> None:
        super().on_topic_buffer_full(tp)
        self.metrics.topic_buffer_full.labels(tp.topic).inc()

    def on_commit_completed(self, consumer: ConsumerT, state: Any) -> None:
        super().on_commit_completed(consumer, state)
        self.metrics.commit_latency.observe(self.time() - float(state))

    def on_send_initiated(
        self,
        producer: ProducerT,
        topic: str,
        message: PendingMessage,
        keysize: int,
        valsize: int,
    ) -> Any:
        self.metrics.messages_sent.labels(topic).inc()
        return super().on_send_initiated(producer, topic, message, keysize, valsize)

    def on_send_completed(self, producer: ProducerT, state: Any, metadata: RecordMetadata) -> None:
        super().on_send_completed(producer, state, metadata)
        self.metrics.send_latency.observe(self.time() - float(state))

    def on_send_error(self, producer: ProducerT, exc: BaseException, state: Any) -> None:
        super().on_send_error(producer, exc, state)
        self.metrics.send_errors.inc()

    def on_assignment_error(self, assignor: Any, state: dict[str, Any], exc: BaseException) -> None:
        super().on_assignment_error(assignor, state, exc)
        self.metrics.assignments.labels("error").inc()

    def on_assignment_completed(self, assignor: Any, state: dict[str, Any]) -> None:
        super().on_assignment_completed(assignor, state)
        self.metrics.assignments.labels("completed").inc()

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        self.metrics.rebalances.inc()
        return super().on_rebalance_start(app)

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        super().on_rebalance_end(app, state)
        self.metrics.rebalance_latency.observe(state["latency_end"])


class OffsetsCollector(Collector):
    """Committed and end offsets per topic-partition, read from the monitor at scrape time.

    ``end - committed`` is the consumer lag Faust sees on every topic it reads (the
    ``distillwatch_consumer_lag_messages`` gauge covers the requests topic as processed).
    """

    def __init__(self, monitor: Monitor, prefix: str = "distillwatch_faust") -> None:
        self.monitor = monitor
        self.prefix = prefix

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        lbl = ["topic", "partition"]
        return (
            GaugeMetricFamily(
                f"{self.prefix}_committed_offset", "Last committed offset", labels=lbl
            ),
            GaugeMetricFamily(
                f"{self.prefix}_end_offset", "High watermark seen by the consumer", labels=lbl
            ),
        )

    def collect(self) -> Iterator[Metric]:
        committed, end = self._families()
        # Copies: the event loop thread may replace entries during a scrape.
        for tp, off in dict(self.monitor.tp_committed_offsets or {}).items():
            committed.add_metric([tp.topic, str(tp.partition)], off)
        for tp, off in dict(self.monitor.tp_end_offsets or {}).items():
            end.add_metric([tp.topic, str(tp.partition)], off)
        yield committed
        yield end


def install(app: faust.App, registry: CollectorRegistry) -> PrometheusMonitor:
    """Replace ``app``'s monitor with a :class:`PrometheusMonitor` exporting to ``registry``.

    Call before the app starts (in ``build_app``): Faust adds its monitor to the sensors at
    start-up.
    """
    # Built the way Faust builds its default monitor (app.monitor): without the app's loop
    # and beacon the consumer group join stalled for ~30 s in our integration runs.
    monitor = PrometheusMonitor(FaustMetrics.create(registry), loop=app.loop, beacon=app.beacon)
    app.monitor = monitor
    registry.register(OffsetsCollector(monitor))
    return monitor

"""The suspension hook's durable memory: action budget and idempotency, kept in Kafka.

Without it the circuit breaker's budget and the decided idempotency keys lived in one
process: a restart reset the budget and decided redelivered alerts again, and W workers had
W budgets (issue 11, item 5). Now every decision the :class:`~streams.sinks.policy.PolicyEngine`
takes is first appended to a one-partition, compacted topic ``<app_id>-suspension-ledger``;
before deciding, the hook reads that topic up to its end, so the engine starts from what
every worker (and every earlier life of this one) decided.

Records (key -> JSON value), all signed with the worker's record secret
(:mod:`streams.integrity`); a record that fails verification or does not decode is skipped
and counted, never applied:

- ``k:<alert_id>:<account_id>:<action>`` -> ``{"ts", "account", "action", "budget"}``: a
  decision was taken (``budget``: it spent the action budget at ``ts``);
- ``f:<idempotency key>`` -> ``{"ts"}``: its execution failed for good, a later update of
  the alert may try again (the budget it spent stays spent);
- ``b:open`` -> ``{"until"}``: the breaker is open until then;
- ``d:<delivery id>`` -> ``{"ts"}``: this alert change was decided; a redelivered copy is
  dropped without a second audit record.

The topic is compacted: only the newest record per key is kept, which is all the replay
needs (keys are unique per decision, and ``b:open`` is the latest state).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from streams.integrity import RecordSigner
from streams.sinks.signed_topic import SignedRecord, SignedTopic

__all__ = ["KafkaLedger", "LedgerRecord", "ledger_topic"]

#: (key, value); a None value is a tombstone.
LedgerRecord = SignedRecord


def ledger_topic(app_id: str) -> str:
    """One ledger per consumer group, like the state changelog."""
    return f"{app_id}-suspension-ledger"


class KafkaLedger(SignedTopic):
    """The ledger topic (one partition, so one total order); reading and writing are
    :class:`~streams.sinks.signed_topic.SignedTopic`'s. Its counter is
    ``distillwatch_ledger_records_total{result}``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        signer: RecordSigner,
        registry: CollectorRegistry | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(bootstrap, topic, signer, registry, client_kwargs,
                         metric="distillwatch_ledger_records_total", what="suspension ledger")

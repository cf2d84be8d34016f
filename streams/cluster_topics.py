"""Names, partition counts and retention of the cluster stages' topics (streams/cluster.py).

Retention is explicit (docs/deployment.md, "Topics"): the two stage topics only need to
outlive a restart of their consumer (a cluster window of key batches, the windows not yet
assembled), so a day is plenty; campaign state is compacted and never deleted by time.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["CLUSTER_TOPIC_CONFIGS", "campaign_state_topic", "cluster_layout",
           "ensure_cluster_topics", "keys_topic", "windows_topic"]

_DAY_MS: Final = 24 * 3600 * 1000


def keys_topic(app_id: str) -> str:
    """Key batches and account-stage watermarks, partitioned by cluster key."""
    return f"{app_id}-cluster-keys"


def windows_topic(app_id: str) -> str:
    """Window totals and per-key-stage watermarks: one partition, campaign assembly."""
    return f"{app_id}-cluster-windows"


def campaign_state_topic(app_id: str) -> str:
    """Campaign assembly's state snapshots (compacted, one key)."""
    return f"{app_id}-campaign-state"


#: Topic configs by kind of topic; the snapshot may exceed Kafka's 1 MB default.
CLUSTER_TOPIC_CONFIGS: Final = {
    "stage": {"cleanup.policy": "delete", "retention.ms": str(_DAY_MS)},
    "state": {"cleanup.policy": "compact", "max.message.bytes": str(16 * 1024 * 1024)},
}


def ensure_cluster_topics(bootstrap: str, app_id: str, partitions: int,
                          client_kwargs: dict[str, Any] | None = None) -> None:
    """Create the cluster stages' topics that do not exist yet (idempotent)."""
    from streams.broker import create_topics

    layout = cluster_layout(app_id, partitions)
    create_topics(bootstrap, {t: n for t, (n, _) in layout.items()},
                  client_kwargs=client_kwargs, configs={t: c for t, (_, c) in layout.items()})


def cluster_layout(app_id: str, partitions: int) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic -> (partitions, configs) of the cluster stages."""
    return {
        keys_topic(app_id): (partitions, CLUSTER_TOPIC_CONFIGS["stage"]),
        windows_topic(app_id): (1, CLUSTER_TOPIC_CONFIGS["stage"]),
        campaign_state_topic(app_id): (1, CLUSTER_TOPIC_CONFIGS["state"]),
    }

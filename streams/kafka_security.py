"""Connection security for every Kafka client the worker opens, built from ``[broker]``.

Kafka is the first line of defence (docs/deployment.md, SECURITY): with SASL/SCRAM and ACLs
only the gateway can write ``requests`` and only workers can write the internal topics. That
only holds if *every* client authenticates: the Faust app, the ingest consumer and producer,
the state-restore consumer and the admin client that creates topics. They all take their
settings from here, so a client cannot be added that silently connects in PLAINTEXT.

aiokafka and kafka-python accept the same keyword names (``security_protocol``,
``sasl_mechanism``, ``sasl_plain_username``, ``sasl_plain_password``, ``ssl_context``), so
one dict serves both; Faust wants a credentials object (:func:`faust_credentials`).

Examples
--------
>>> from streams.config import BrokerConfig
>>> client_kwargs(BrokerConfig())
{'security_protocol': 'PLAINTEXT'}
>>> kw = client_kwargs(BrokerConfig(security_protocol="SASL_PLAINTEXT",
...                                 sasl_username="worker", sasl_password="pw"))
>>> kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]
('SCRAM-SHA-512', 'worker', 'pw')
>>> faust_credentials(BrokerConfig()) is None
True
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from streams.config import BrokerConfig

__all__ = ["client_kwargs", "faust_credentials", "ssl_context"]


def ssl_context(broker: BrokerConfig) -> ssl.SSLContext | None:
    """A verifying TLS context for SSL/SASL_SSL (the system CAs, or ``ssl_cafile``), else None.

    ``ssl.create_default_context`` checks the certificate chain and the host name; neither
    can be switched off from the configuration, by design."""
    if broker.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=broker.ssl_cafile)


def client_kwargs(broker: BrokerConfig) -> dict[str, Any]:
    """Keyword arguments for an aiokafka or kafka-python client of ``broker``.

    The password is read here (from the field or its ``_file``) and handed to the client
    only; the dict must not be logged."""
    kw: dict[str, Any] = {"security_protocol": broker.security_protocol}
    ctx = ssl_context(broker)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if broker.security_protocol.startswith("SASL_"):
        kw["sasl_mechanism"] = broker.sasl_mechanism
        kw["sasl_plain_username"] = broker.sasl_username
        kw["sasl_plain_password"] = broker.sasl_secret()
    return kw


def faust_credentials(broker: BrokerConfig) -> CredentialsT | None:
    """The Faust ``broker_credentials`` for ``broker`` (None = PLAINTEXT)."""
    import faust

    ctx = ssl_context(broker)
    if broker.security_protocol.startswith("SASL_"):
        # Faust derives SASL_SSL from the presence of ssl_context, SASL_PLAINTEXT otherwise.
        return faust.SASLCredentials(
            username=broker.sasl_username,
            password=broker.sasl_secret(),
            ssl_context=ctx,
            mechanism=broker.sasl_mechanism,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None

"""[broker] security settings reach every Kafka client: the kwargs mapping, Faust's
credentials, the validation, and `config --show` masking (Tansu has no SASL here, so the
mapping is tested directly; the worker's clients all call the same helper)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka.admin import KafkaAdminClient

from streams.config import BrokerConfig, ConfigError, load_config
from streams.kafka_security import client_kwargs, faust_credentials

SASL_ENV = {
    "DISTILLWATCH_BROKER__URL": "kafka://kafka-0:9093,kafka-1:9093",
    "DISTILLWATCH_BROKER__SECURITY_PROTOCOL": "SASL_SSL",
    "DISTILLWATCH_BROKER__SASL_MECHANISM": "SCRAM-SHA-256",
    "DISTILLWATCH_BROKER__SASL_USERNAME": "distillwatch-worker",
}


def test_plaintext_by_default_and_no_credentials():
    cfg = load_config(environ={})
    assert client_kwargs(cfg.broker) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(cfg.broker) is None


def test_sasl_ssl_from_environment_and_password_file(tmp_path: Path):
    pw = tmp_path / "sasl_password"
    pw.write_text("s3cr3t-scram\n")
    cfg = load_config(environ={**SASL_ENV, "DISTILLWATCH_BROKER__SASL_PASSWORD_FILE": str(pw)})
    kw = client_kwargs(cfg.broker)
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kw["sasl_plain_username"] == "distillwatch-worker"
    assert kw["sasl_plain_password"] == "s3cr3t-scram"
    ctx = kw["ssl_context"]
    # Certificates and host names are verified; there is no knob to turn that off.
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # Faust's aiokafka driver turns our credentials into the same settings.
    creds = faust_credentials(cfg.broker)
    assert isinstance(creds, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == (
        "distillwatch-worker", "s3cr3t-scram")
    # The real clients accept the kwargs (they only connect on start()).

    async def build() -> None:
        AIOKafkaProducer(bootstrap_servers=cfg.broker.bootstrap, **kw)
        AIOKafkaConsumer(bootstrap_servers=cfg.broker.bootstrap, **kw)

    asyncio.run(build())
    # kafka-python (the admin client that creates topics) takes the same names; building
    # one would connect, so check its accepted settings instead.
    assert set(kw) <= set(KafkaAdminClient.DEFAULT_CONFIG)


def test_sasl_plaintext_and_ssl_only():
    b = BrokerConfig(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    assert "ssl_context" not in client_kwargs(b)
    auth = credentials_to_aiokafka_auth(faust_credentials(b))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    s = BrokerConfig(security_protocol="SSL")
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SSL" and "sasl_plain_password" not in kw
    assert credentials_to_aiokafka_auth(faust_credentials(s))["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    "extra",
    [
        {},  # SASL without a password
        {"DISTILLWATCH_BROKER__SASL_PASSWORD": "a",
         "DISTILLWATCH_BROKER__SASL_PASSWORD_FILE": "/etc/hostname"},
        {"DISTILLWATCH_BROKER__SASL_PASSWORD_FILE": "/nonexistent/pw"},
        {"DISTILLWATCH_BROKER__SASL_PASSWORD": "a", "DISTILLWATCH_BROKER__SSL_CAFILE": "/no/ca"},
        {"DISTILLWATCH_BROKER__SASL_PASSWORD": "a",
         "DISTILLWATCH_BROKER__SECURITY_PROTOCOL": "SASL_SSLX"},
        {"DISTILLWATCH_BROKER__SASL_PASSWORD": "a",
         "DISTILLWATCH_BROKER__SASL_MECHANISM": "GSSAPI"},
    ],
)
def test_bad_security_settings_refuse_to_start(extra):
    with pytest.raises(ConfigError) as err:
        load_config(environ={**SASL_ENV, **extra})
    assert "broker" in str(err.value)
    assert "'a'" not in str(err.value)  # never echoes the password


def test_config_show_masks_password_and_url_credentials(capsys):
    env = {
        **SASL_ENV,
        "DISTILLWATCH_BROKER__SASL_PASSWORD": "scram-pa55",
        "DISTILLWATCH_SINKS__ACCOUNT_API_URL": "http://user:pass@host/x?token=abc",
        "DISTILLWATCH_SINKS__GRAFANA_URL": "https://grafana/d/x?orgId=1&auth_token=tok123",
    }
    shown = str(load_config(environ=env).masked())
    for leak in ("scram-pa55", "user:", ":pass", "=abc", "tok123"):
        assert leak not in shown, leak
    assert "http://***@host/x?token=***" in shown
    assert "kafka://kafka-0:9093,kafka-1:9093" in shown  # where it connects stays visible


def test_config_show_command_prints_no_url_credentials(monkeypatch, capsys):
    import argparse

    from streams import config_cmd

    monkeypatch.setenv("DISTILLWATCH_SINKS__ACCOUNT_API_URL", "http://user:pass@host/x?token=abc")
    monkeypatch.delenv("DISTILLWATCH_CONFIG", raising=False)
    assert config_cmd.run(argparse.Namespace(config=None, show=True)) == 0
    out = capsys.readouterr().out
    assert "user:pass" not in out and "abc" not in out
    assert '"account_api_url": "http://***@host/x?token=***"' in out

"""The [sinks] configuration: secrets from the environment or files, never echoed."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from streams.config import ConfigError, load_config
from streams.delivery import build_dispatcher


async def _noop(rec):
    return None


def test_secrets_from_files(tmp_path):
    (tmp_path / "slack").write_text("https://hooks.example/services/T/B/FILE-S3CRET\n")
    (tmp_path / "urls").write_text("# receivers\nhttps://a.example/h1\n\nhttps://b.example/h2\n")
    (tmp_path / "key").write_text("k3y")
    cfg = load_config(environ={
        "DISTILLWATCH_SINKS__SLACK_WEBHOOK_URL_FILE": str(tmp_path / "slack"),
        "DISTILLWATCH_SINKS__WEBHOOK_URLS_FILE": str(tmp_path / "urls"),
        "DISTILLWATCH_SINKS__WEBHOOK_SECRET_FILE": str(tmp_path / "key"),
    })
    s = cfg.sinks
    assert s.secret("slack_webhook_url") == "https://hooks.example/services/T/B/FILE-S3CRET"
    assert s.webhook_url_list() == ["https://a.example/h1", "https://b.example/h2"]
    assert s.secret("webhook_secret") == "k3y"
    assert s.secret("account_api_auth") is None
    assert "S3CRET" not in str(cfg.masked())
    d = build_dispatcher(cfg, CollectorRegistry(), audit=_noop, dlq=_noop)
    assert [r.name for r in d.runners] == ["slack", "webhook", "webhook", "suspension"]
    assert "S3CRET" not in repr([r.sink for r in d.runners])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DISTILLWATCH_SINKS__WEBHOOK_URLS": "https://x.example/S3CRET"},
         "webhook_urls needs webhook_secret"),
        ({"DISTILLWATCH_SINKS__WEBHOOK_SECRET": "S3CRET",
          "DISTILLWATCH_SINKS__WEBHOOK_SECRET_FILE": "/etc/hostname"}, "not both"),
        ({"DISTILLWATCH_SINKS__ACCOUNT_API_AUTH_FILE": "/nonexistent/S3CRET"},
         "no such file"),
        ({"DISTILLWATCH_SINKS__WEBHOOK_URLS": "ftp://x/S3CRET",
          "DISTILLWATCH_SINKS__WEBHOOK_SECRET": "k"}, "expected http"),
        ({"DISTILLWATCH_SINKS__BACKOFF_MAX_S": "0.1"}, "backoff_max_s must be >="),
    ],
)
def test_invalid_sinks_config_names_the_problem_not_the_secret(env, message):
    with pytest.raises(ConfigError) as err:
        load_config(environ=env)
    assert message in str(err.value)
    assert "S3CRET" not in str(err.value).replace("/nonexistent/S3CRET", "")


def test_bot_token_needs_a_channel():
    cfg = load_config(environ={"DISTILLWATCH_SINKS__SLACK_BOT_TOKEN": "xoxb-1"})
    with pytest.raises(ValueError, match="slack_channel"):
        build_dispatcher(cfg, CollectorRegistry(), audit=_noop, dlq=_noop)


def test_live_policy_without_api_stays_dry_run(tmp_path, caplog):
    policy = tmp_path / "p.toml"
    policy.write_text("dry_run = false\n")
    cfg = load_config(environ={"DISTILLWATCH_SINKS__POLICY_FILE": str(policy)})
    d = build_dispatcher(cfg, CollectorRegistry(), audit=_noop, dlq=_noop)
    assert d.suspension is not None and d.suspension.sink.dry_run is True
    assert "dry_run = false but sinks.account_api_url is unset" in caplog.text

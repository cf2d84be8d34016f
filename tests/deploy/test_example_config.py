"""deploy/config.example.toml is the documented production config: it validates, names every
field of streams/config.py (set, or commented out with its meaning), and holds no secret."""

from __future__ import annotations

import re

from streams.config import Config
from tests.deploy.manifests import EXAMPLE_CONFIG, config_for


def _sections(text: str) -> dict[str, str]:
    """Body of each ``[section]`` of the TOML text, comments included."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"\s*\[(\w+)\]\s*$", line)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def _fields() -> dict[str, dict[str, str]]:
    """section -> field -> annotation text, for every field of the Config."""
    out = {}
    for section, sec_field in Config.model_fields.items():
        model = sec_field.annotation
        assert model is not None
        out[section] = {n: str(f.annotation) for n, f in model.model_fields.items()}
    return out


def test_validates() -> None:
    cfg = config_for({}, EXAMPLE_CONFIG)
    assert cfg.topics.partitions >= 2


def test_documents_every_field() -> None:
    sections = _sections(EXAMPLE_CONFIG.read_text())
    missing = []
    for section, fields in _fields().items():
        body = sections.get(section)
        assert body is not None, f"deploy/config.example.toml has no [{section}] section"
        for name, annotation in fields.items():
            if "SecretStr" in annotation:
                continue  # credentials: named in a comment as environment variables
            if not re.search(rf"^\s*(#\s*)?{name}\s*=", body, re.MULTILINE):
                missing.append(f"{section}.{name}")
    assert not missing, (
        "add these to deploy/config.example.toml (set, or commented out as `# field = value`, "
        f"with a line on what they do): {missing}"
    )


def test_holds_no_secret() -> None:
    sections = _sections(EXAMPLE_CONFIG.read_text())
    for section, fields in _fields().items():
        for name, annotation in fields.items():
            if "SecretStr" not in annotation:
                continue
            assert not re.search(rf"^\s*{name}\s*=", sections.get(section, ""), re.MULTILINE), (
                f"{section}.{name} is a credential: set it from the environment or a file"
            )
            # ...and the comment says which variable to use instead.
            assert f"DISTILLWATCH_{section.upper()}__{name.upper()}" in EXAMPLE_CONFIG.read_text()

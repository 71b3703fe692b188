"""Command-line parsing of the serve command's overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.cli import _config, _parser
from broker.config import ConfigError

DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "broker.toml"


def test_listen_flags_override_the_config() -> None:
    args = _parser().parse_args(
        ["serve", "--config", str(DEPLOY_CONFIG), "--listen", "mqtt=:1999", "--listen", "amqp=off"]
    )
    config = _config(args)
    assert config.listener("mqtt") == ("127.0.0.1", 1999)
    assert config.listener("amqp") is None
    assert config.listener("xmpp") == ("0.0.0.0", 5222)


def test_data_dir_flag_overrides_the_config(tmp_path: Path) -> None:
    args = _parser().parse_args(["serve", "--data-dir", str(tmp_path)])
    assert _config(args).store.data_dir == str(tmp_path)


def test_malformed_listen_flag_is_refused() -> None:
    args = _parser().parse_args(["serve", "--listen", "mqtt"])
    with pytest.raises(ConfigError):
        _config(args)

"""The Dockerfile and compose.yaml agree with the CLI and the config they ship (no Docker
engine runs here, so this checks the files against the code instead of running them)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from broker.cli import _parser
from broker.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def compose_service() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["broker"]


def dockerfile_cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    entry = yaml.safe_load(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", text, re.M).group(1))
    return entry + cmd


def test_compose_command_is_a_valid_cli_invocation() -> None:
    service = compose_service()
    args = _parser().parse_args(service["command"])
    assert args.func.__name__ == "_serve"
    assert args.data_dir == "/data"
    assert dockerfile_cmd() == ["broker", *service["command"]]


def test_compose_volume_holds_the_data_dir_and_config() -> None:
    service = compose_service()
    args = _parser().parse_args(service["command"])
    targets = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert targets[args.data_dir] == "broker-data"
    assert targets[args.config] == "./deploy/broker.toml"
    assert "VOLUME /data" in (ROOT / "Dockerfile").read_text()


def test_published_ports_match_the_config_listeners() -> None:
    service = compose_service()
    config = load_config(str(ROOT / "deploy" / "broker.toml"))
    published = {int(p.split(":")[1]) for p in service["ports"]}
    listening = {
        config.listener(name)[1]
        for name in ("mqtt", "amqp", "xmpp", "http")
        if config.listener(name)
    }
    assert published == listening
    assert all(config.listener(name)[0] == "0.0.0.0" for name in ("mqtt", "amqp", "xmpp", "http"))
    exposed = set(
        map(
            int,
            re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1).split(),
        )
    )
    assert exposed == published

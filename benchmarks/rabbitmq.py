"""A throwaway RabbitMQ node for one scenario: its files, environment and version.

The node runs from the distribution's start script (not Debian's wrapper, which switches
to the ``rabbitmq`` user) with every path in a temporary directory, so it touches nothing
of a system-wide RabbitMQ, and with its own ``epmd`` on a free port, which the caller
starts and stops, so no Erlang port mapper daemon outlives the run.  guest/guest works on
loopback by default.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"
READY_LINE = b"Server startup complete"
MQTT_PLUGIN = "rabbitmq_mqtt"


def installed() -> bool:
    return SERVER.exists() and Path(EPMD).exists()


def has_plugin(name: str) -> bool:
    """Whether the installed release ships plugin ``name`` (Debian's package ships all
    the core plugins, but other builds may not)."""
    plugins = SERVER.resolve().parent.parent / "plugins"
    return any(plugins.glob(f"{name}-*"))


def prepare(tmp: Path, amqp_port: int, mqtt_port: int | None) -> None:
    """Write the node's config file and enabled-plugins file into ``tmp``; the MQTT plugin
    is enabled, on ``mqtt_port``, only when one is given."""
    conf = ["log.console = true", "log.file = false"]
    plugins = []
    if mqtt_port is not None:
        conf.append(f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}")
        plugins.append(MQTT_PLUGIN)
    (tmp / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
    (tmp / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
    (tmp / "rabbitmq-env.conf").write_text("")


def environment(
    base: dict[str, str], tmp: Path, amqp_port: int, dist_port: int, epmd_port: int
) -> dict[str, str]:
    """``base`` plus everything that points the node at ``tmp`` and its ports."""
    return base | {
        "HOME": str(tmp),  # the Erlang cookie goes here
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": f"bench-{amqp_port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
        "RABBITMQ_LOG_BASE": str(tmp / "log"),
        "RABBITMQ_LOGS": "-",  # to stdout, which the caller sends to the scenario's log
        "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(tmp / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": str(tmp / "rabbitmq-env.conf"),
    }


def version(log: str) -> str | None:
    """The release and Erlang version the node logged at start."""
    found = re.search(r"Starting (RabbitMQ \S+ on Erlang \S+)", log)
    return found.group(1) if found else None

"""Run the broker under test as a subprocess: ours (`python -m broker serve`), Mosquitto or
RabbitMQ.

BROKER_UNDER_TEST=ours (default), mosquitto (checks the MQTT tests) or rabbitmq (checks the
AMQP tests). All take the same config dict (our TOML schema); the Mosquitto and RabbitMQ
launchers translate the few settings the tests use.
"""

from __future__ import annotations

import copy
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BROKER_UNDER_TEST = os.environ.get("BROKER_UNDER_TEST", "ours")
assert BROKER_UNDER_TEST in ("ours", "mosquitto", "rabbitmq"), BROKER_UNDER_TEST
ON_MOSQUITTO = BROKER_UNDER_TEST == "mosquitto"
ON_RABBITMQ = BROKER_UNDER_TEST == "rabbitmq"

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

ALICE = ("alice", "secret")
NOPERM = ("noperm", "nopass")  # authenticates, but has no permissions on vhost "/"

DEFAULT_CONFIG: dict[str, Any] = {
    "listeners": {
        "mqtt": "127.0.0.1:0",
        "amqp": "127.0.0.1:0",
        "xmpp": "127.0.0.1:0",
        "http": "127.0.0.1:0",
    },
    "mqtt": {"max_packet_size": 65536, "sys_interval": 1, "max_inflight": 20},
    "auth": {"allow_anonymous": True},
    "users": [
        {
            "name": ALICE[0],
            "password": ALICE[1],
            "permissions": {"/": {"configure": ".*", "write": ".*", "read": ".*"}},
        },
        {"name": NOPERM[0], "password": NOPERM[1]},
    ],
    "acl": [
        {"user": ALICE[0], "topic": "private/#", "action": "all", "allow": True},
        {"user": "*", "topic": "private/#", "action": "all", "allow": False},
    ],
}

# DEFAULT_CONFIG's ACL in Mosquitto's terms (lines before the first `user` are for anonymous).
MOSQUITTO_ACL = """\
topic readwrite #
topic read $SYS/#
topic deny private/#
user alice
topic readwrite #
topic read $SYS/#
"""


def skip_on_mosquitto(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(ON_MOSQUITTO, reason=f"Mosquitto: {reason}")


@dataclass(frozen=True)
class Certs:
    """Files of a test CA and of a server certificate (with chain) and key it signed."""

    ca: Path
    cert: Path
    key: Path


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with `overrides` merged into its tables (other values replace)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"no TOML form for {value!r}")


def to_toml(config: dict[str, Any]) -> str:
    """Tables become [sections], lists of tables [[arrays]]; enough for our config."""
    lines: list[str] = []
    for name, value in config.items():
        tables = (
            [(f"[{name}]", value)]
            if isinstance(value, dict)
            else [(f"[[{name}]]", t) for t in value]
        )
        for header, table in tables:
            lines.append(header)
            lines += [f"{key} = {toml_value(v)}" for key, v in table.items()]
            lines.append("")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerError(Exception):
    """The broker did not start (or stop) as it should."""


class BrokerProcess:
    """A broker subprocess whose output is drained by a thread and kept in `log`."""

    host = "127.0.0.1"
    start_timeout = START_TIMEOUT

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config = config
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = 0
        self.mqtts_port: int | None = None
        self.amqp_port: int | None = None
        self.amqps_port: int | None = None
        self.xmpp_port: int | None = None
        self.xmpps_port: int | None = None
        self.http_port: int | None = None
        self.log: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._logged = threading.Condition()  # notified on every line of output

    def command(self) -> list[str]:
        raise NotImplementedError

    def set_memory_alarm(self, on: bool) -> None:
        """Raise or clear the broker's memory alarm (AMQP connection.blocked tests)."""
        raise NotImplementedError(f"{type(self).__name__} has no memory alarm to set")

    def wait_logged(self, text: str, count: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``text`` appears in the output ``count`` times (BrokerError if not)."""
        with self._logged:
            if not self._logged.wait_for(lambda: self.log_text().count(text) >= count, timeout):
                raise BrokerError(f"{text!r} not logged {count} times:\n{self.log_text()}")

    def on_line(self, line: str) -> bool:
        """Learn from one line of output; True once the broker is ready."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self) -> None:
        """Start the process and wait until the broker is ready (BrokerError if not)."""
        command = self.command()
        self.log.append(f"---- starting: {' '.join(command)}")
        self.proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=self.env(),
            start_new_session=True,  # its own process group, for kill()
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._drain, args=(self.proc, self._lines), daemon=True).start()
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _drain(self, proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._logged:
                self.log.append(line.rstrip("\n"))
                self._logged.notify_all()
            lines.put(line)
        lines.put(None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise BrokerError(
                    f"not ready after {self.start_timeout}s:\n{self.log_text()}"
                ) from None
            if line is None:
                code = self.proc.wait() if self.proc else None
                raise BrokerError(f"exited with {code} before ready:\n{self.log_text()}")
            if self.on_line(line):
                return

    def log_text(self) -> str:
        return "\n".join(self.log)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> int:
        """SIGTERM (graceful stop); return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerError(f"still running {STOP_TIMEOUT}s after SIGTERM") from None

    def kill(self) -> None:
        """SIGKILL to the whole process group (a wrapper script's children too): a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)


class OurBroker(BrokerProcess):
    """`python -m broker serve`: listeners on port 0, addresses learnt from its log."""

    LISTENING = re.compile(r"\blistening\b.*\bprotocol=(\S+).*\baddress=(\S+):(\d+)")
    READY = re.compile(r"\sINFO\s+ready\b")

    def start(self) -> None:
        # new ports on every start
        self.mqtt_port, self.mqtts_port, self.amqp_port, self.amqps_port = 0, None, None, None
        self.xmpp_port, self.xmpps_port, self.http_port = None, None, None
        super().start()

    def command(self) -> list[str]:
        conf = self.workdir / "broker.toml"
        conf.write_text(to_toml(self.config))
        serve = [sys.executable, "-m", "broker", "serve"]
        return [*serve, "--config", str(conf), "--data-dir", str(self.data_dir)]

    def set_memory_alarm(self, on: bool) -> None:
        """Raise the memory alarm (a watermark below what the broker uses) or clear it:
        the config file rewritten, then SIGHUP, which reloads the limits; returns once the
        broker has logged the reload."""
        limits = self.config.setdefault("limits", {})
        limits["memory_high_watermark"] = 0.000001 if on else 0.4
        (self.workdir / "broker.toml").write_text(to_toml(self.config))
        reloads = self.log_text().count("config reloaded")
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        self.wait_logged("config reloaded", reloads + 1)

    def on_line(self, line: str) -> bool:
        if m := self.LISTENING.search(line):
            protocol, port = m.group(1), int(m.group(3))
            if protocol == "mqtt":
                self.mqtt_port = port
            elif protocol == "mqtts":
                self.mqtts_port = port
            elif protocol == "amqp":
                self.amqp_port = port
            elif protocol == "amqps":
                self.amqps_port = port
            elif protocol == "xmpp":
                self.xmpp_port = port
            elif protocol == "xmpps":
                self.xmpps_port = port
            elif protocol == "http":
                self.http_port = port
            return False
        if self.READY.search(line):
            if not self.mqtt_port:
                raise BrokerError(f"ready, but no mqtt listener logged:\n{self.log_text()}")
            return True
        return False


class Mosquitto(BrokerProcess):
    """Debian's Mosquitto with `config` translated to mosquitto.conf, on fixed free ports."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(workdir, config)
        if config["acl"] not in ([], DEFAULT_CONFIG["acl"]):
            raise NotImplementedError("only the default ACL or none has a Mosquitto translation")
        self.mqtt_port = free_port()
        self.mqtts_port = free_port() if "tls" in config else None

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._conf())
        return ["mosquitto", "-c", str(conf)]

    def _conf(self) -> str:
        passwd, acl = self.workdir / "passwd", self.workdir / "acl"
        passwd.write_text("")
        for user in self.config["users"]:
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwd), user["name"], user["password"]],
                check=True,
                capture_output=True,
            )
        mqtt, auth = self.config["mqtt"], self.config["auth"]
        lines = [
            "user root",
            "per_listener_settings false",
            f"allow_anonymous {str(auth['allow_anonymous']).lower()}",
            f"password_file {passwd}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            f"max_packet_size {mqtt['max_packet_size']}",
            f"sys_interval {mqtt['sys_interval']}",
            f"max_inflight_messages {mqtt['max_inflight']}",
            f"max_queued_messages {mqtt.get('max_queued', 1000)}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"listener {self.mqtt_port} {self.host}",
        ]
        if self.config["acl"]:
            acl.write_text(MOSQUITTO_ACL)
            lines.append(f"acl_file {acl}")
        if self.mqtts_port:
            tls = self.config["tls"]
            lines += [
                f"listener {self.mqtts_port} {self.host}",
                f"certfile {tls['cert']}",
                f"keyfile {tls['key']}",
            ]
        return "\n".join(lines) + "\n"

    def on_line(self, line: str) -> bool:
        return bool(re.search(r"mosquitto version \S+ running", line))


class RabbitMQ(BrokerProcess):
    """Debian's RabbitMQ as a node of its own: fixed free ports, every file under `workdir`,
    and the config's users created with rabbitmqctl on first start.

    It runs the wrapper script rather than `erl` directly: the script turns SIGTERM into a
    graceful stop; kill() takes its process group. The epmd daemon it starts outlives it
    (as it does under systemd) and serves later nodes.
    """

    SBIN = Path("/usr/lib/rabbitmq/bin")  # the scripts as the invoking user, not `rabbitmq`
    READY = re.compile(r"Server startup complete")
    start_timeout = 60.0  # the Erlang VM and mnesia take a few seconds to boot

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(workdir, config)
        if config["users"] != DEFAULT_CONFIG["users"]:
            raise NotImplementedError("only the default users have a RabbitMQ translation")
        self.amqp_port = free_port()
        self.dist_port = free_port()  # Erlang distribution, for rabbitmqctl
        self.node = f"rabbit-{self.amqp_port}@localhost"
        self.conf = workdir / "rabbitmq.conf"
        self.plugins = workdir / "enabled_plugins"
        self._users_created = False

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.workdir),  # where the Erlang cookie goes
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.data_dir),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_LOGS": "-",  # to stdout, where readiness is read
            "RABBITMQ_CONFIG_FILE": str(self.conf),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.plugins),
        }

    def command(self) -> list[str]:
        self.conf.write_text(f"listeners.tcp.1 = {self.host}:{self.amqp_port}\n")
        self.plugins.write_text("[].\n")
        return [str(self.SBIN / "rabbitmq-server")]

    def on_line(self, line: str) -> bool:
        return bool(self.READY.search(line))

    def start(self) -> None:
        super().start()
        if not self._users_created:  # users live in mnesia: a restart keeps them
            self._create_users()
            self._users_created = True

    def ctl(self, *args: str) -> str:
        """Run `rabbitmqctl` against this node; its output."""
        done = subprocess.run(
            [str(self.SBIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if done.returncode != 0:
            raise BrokerError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def _create_users(self) -> None:
        for user in self.config["users"]:
            self.ctl("add_user", user["name"], user["password"])
            for vhost, perms in user.get("permissions", {}).items():
                rights = (perms["configure"], perms["write"], perms["read"])
                self.ctl("set_permissions", "-p", vhost, user["name"], *rights)

    def set_memory_alarm(self, on: bool) -> None:
        """Raise the memory alarm (a watermark below what the node uses) or clear it."""
        self.ctl("set_vm_memory_high_watermark", "0.0000001" if on else "0.4")


BrokerFactory = Callable[..., BrokerProcess]


def launcher() -> type[BrokerProcess]:
    """The BrokerProcess class of the broker under test."""
    return {"ours": OurBroker, "mosquitto": Mosquitto, "rabbitmq": RabbitMQ}[BROKER_UNDER_TEST]

"""Start and stop the brokers under test; read their CPU time and RSS from /proc."""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import rabbitmq, xmpppeers
from benchmarks.loadgen import raise_nofile
from benchmarks.xmppwire import DOMAIN, PASSWORD
from broker.tls import ensure_self_signed

REPO = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
KINDS = ("ours", "mosquitto", "rabbitmq", "prosody", "ejabberd")
START_TIMEOUT = {"ours": 120.0, "mosquitto": 20.0, "rabbitmq": 90.0, "prosody": 20.0}
START_TIMEOUT["ejabberd"] = 90.0
STOP_TIMEOUT = {"ours": 5.0, "mosquitto": 5.0, "rabbitmq": 30.0, "prosody": 5.0}
STOP_TIMEOUT["ejabberd"] = 15.0
READY_LINE = {
    "ours": b" ready",
    "rabbitmq": rabbitmq.READY_LINE,
    "ejabberd": xmpppeers.EJABBERD_READY,
}
#: brokers that accept connections before they are ready: only their log line counts
LATE_READY = ("rabbitmq", "ejabberd")
XMPP_PEERS = ("prosody", "ejabberd")

OURS_CMD = "{python} -m broker serve --config {config} --data-dir {data_dir}"
OURS_CONFIG = """\
[listeners]
mqtt = {mqtt}
amqp = {amqp}
xmpp = {xmpp}
http = {http}
[xmpp]
domain = "{domain}"
"""
OURS_USER = """
[[users]]
name = "{name}"
password = "{password}"
permissions = {{ "/" = {{ configure = ".*", write = ".*", read = ".*" }} }}
"""

MOSQUITTO_LISTENERS = {
    "mqtt": "listener {port} 127.0.0.1\nmax_connections -1\n",
    "http": "listener {port} 127.0.0.1\nprotocol websockets\nmax_connections -1\n",
}
MOSQUITTO_CONFIG = """\
allow_anonymous true
max_queued_messages 1000
persistence false
connection_messages false
log_dest file {log}
user {user}
"""


class BrokerUnavailable(Exception):
    """The broker does not offer a protocol the scenario needs: a skip, not a failure."""


def installed(kind: str) -> bool:
    if kind == "mosquitto":
        return Path(MOSQUITTO).exists()
    if kind == "rabbitmq":
        return rabbitmq.installed()
    if kind == "prosody":
        return xmpppeers.prosody_installed()
    if kind == "ejabberd":
        return xmpppeers.ejabberd_installed()
    return True


def unsupported(kind: str, protocols: tuple[str, ...]) -> str | None:
    """Why an installed peer cannot serve ``protocols``, or None if it can."""
    if kind == "mosquitto" and set(protocols) - {"mqtt", "http"}:
        return "Mosquitto speaks MQTT only"
    if kind == "mosquitto" and "mqtt" not in protocols:
        return "Mosquitto 2.0 opens websockets listeners only beside an MQTT one"
    if kind in XMPP_PEERS and set(protocols) != {"xmpp"}:
        return f"{kind} runs here for XMPP only"
    if kind == "rabbitmq" and "xmpp" in protocols:
        return "RabbitMQ speaks no XMPP"
    if kind == "rabbitmq" and "http" in protocols:
        return "RabbitMQ runs here without its web plugins"
    if kind == "rabbitmq" and "mqtt" in protocols and not rabbitmq.has_plugin(rabbitmq.MQTT_PLUGIN):
        return f"RabbitMQ has no {rabbitmq.MQTT_PLUGIN} plugin"
    if kind == "rabbitmq" and "amqp" not in protocols:
        return "a RabbitMQ run needs the AMQP listener"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is field 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def session_pids(sid: int) -> list[int]:
    """Every process in session ``sid``: a broker and whatever it started (RabbitMQ's
    start script runs the Erlang VM as a child)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat(int(entry.name))[3]) == sid:
                    pids.append(int(entry.name))
    return pids


def cpu_seconds(sid: int) -> float:
    """utime + stime of every process in session ``sid``, all threads, in seconds."""
    ticks = 0
    for pid in session_pids(sid):
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Broker:
    """One fresh broker process, in its own session, on free loopback ports; a context
    manager.

    ``kind`` is one of :data:`KINDS`; ``protocols`` the listeners the scenario needs
    (``mqtt``, ``amqp``, ``xmpp``, ``http``: MQTT over WebSocket on ``/mqtt``, and ours'
    native protocol on ``/ws``), each on its own port; ``accounts`` the XMPP users to
    create, each with password :data:`PASSWORD`, on domain :data:`DOMAIN`; ``archive``
    has the XMPP peers archive one-to-one messages (XEP-0313) as ours does.  ``ours_cmd``
    replaces our broker's command line (placeholders ``{python} {port} {amqp_port}
    {config} {data_dir}``, ``{port}`` being the MQTT one) for dry runs against stand-ins.
    Entering raises :class:`BrokerUnavailable` when our broker starts without a listener
    it was configured for.
    """

    def __init__(
        self,
        kind: str,
        log_path: Path,
        ours_cmd: str | None = None,
        protocols: tuple[str, ...] = ("mqtt",),
        accounts: list[str] | None = None,
        archive: bool = False,
    ) -> None:
        self.kind = kind
        self.log_path = log_path
        self.ours_cmd = ours_cmd
        self.protocols = protocols
        self.accounts = accounts or []
        self.archive = archive
        self.ports: dict[str, int] = {}
        self.version: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def port(self) -> int:
        """The MQTT port."""
        return self.ports["mqtt"]

    @property
    def amqp_port(self) -> int:
        return self.ports["amqp"]

    @property
    def xmpp_port(self) -> int:
        return self.ports["xmpp"]

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    def __enter__(self) -> Broker:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-{self.kind}-")
        tmp = Path(self._tmp.name)
        self.ports = {p: free_port() for p in self.protocols}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)
        try:
            cmd, env = self._command(tmp)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    cmd,
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=raise_nofile,
                    start_new_session=True,
                )
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _command(self, tmp: Path) -> tuple[list[str], dict[str, str] | None]:
        if reason := unsupported(self.kind, self.protocols):
            raise ValueError(reason)
        if self.kind == "mosquitto":
            config = tmp / "mosquitto.conf"
            user = pwd.getpwuid(os.getuid()).pw_name
            ports = self.ports.items()
            listeners = "".join(MOSQUITTO_LISTENERS[p].format(port=n) for p, n in ports)
            config.write_text(listeners + MOSQUITTO_CONFIG.format(log=self.log_path, user=user))
            self.version = subprocess.run(
                [MOSQUITTO, "-h"], capture_output=True, text=True
            ).stdout.split("\n", 1)[0]
            return [MOSQUITTO, "-c", str(config)], None
        if self.kind == "rabbitmq":
            return [str(rabbitmq.SERVER)], self._rabbitmq_env(tmp)
        if self.kind in XMPP_PEERS:
            return self._xmpp_peer(tmp)
        config = tmp / "broker.toml"
        listeners = {
            p: f'"127.0.0.1:{self.ports[p]}"' if p in self.ports else "false"
            for p in ("mqtt", "amqp", "xmpp", "http")
        }
        users = (OURS_USER.format(name=name, password=PASSWORD) for name in self.accounts)
        config.write_text(OURS_CONFIG.format(**listeners, domain=DOMAIN) + "".join(users))
        template = (
            self.ours_cmd or "{python} -m broker serve --config {config} --data-dir {data_dir}"
        )
        line = template.format(
            python=sys.executable,
            port=self.ports.get("mqtt", 0),
            amqp_port=self.ports.get("amqp", 0),
            config=config,
            data_dir=tmp / "data",
        )
        return shlex.split(line), None

    def _xmpp_peer(self, tmp: Path) -> tuple[list[str], dict[str, str]]:
        cert, key = ensure_self_signed(tmp, DOMAIN)
        args = (tmp, self.xmpp_port, DOMAIN, self.accounts, PASSWORD, cert, key, self.archive)
        if self.kind == "prosody":
            self.version = xmpppeers.prosody_version()
            cmd, env = xmpppeers.prosody(*args)
        else:
            self.version = xmpppeers.ejabberd_version()
            cmd, env = xmpppeers.ejabberd(*args)
        return cmd, dict(os.environ) | env

    def _rabbitmq_env(self, tmp: Path) -> dict[str, str]:
        """Start the node's own epmd and prepare its files; the node's environment."""
        epmd_port = free_port()
        epmd = subprocess.Popen(
            [rabbitmq.EPMD, "-port", str(epmd_port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._helpers.append(epmd)
        deadline = time.monotonic() + 5
        while not _accepts(epmd_port):
            if epmd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"epmd did not start on port {epmd_port}")
            time.sleep(0.05)
        rabbitmq.prepare(tmp, self.amqp_port, self.ports.get("mqtt"))
        return rabbitmq.environment(dict(os.environ), tmp, self.amqp_port, free_port(), epmd_port)

    def _wait_ready(self) -> None:
        """Until the broker logs that it is ready or (ours and mosquitto) every port
        accepts connections."""
        assert self.proc is not None
        timeout = START_TIMEOUT[self.kind]
        marker = READY_LINE.get(self.kind)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start: {self.log_tail()}")
            log = self.log_path.read_bytes()
            if marker is not None and marker in log:
                self._on_ready(log)
                return
            if self.kind not in LATE_READY and all(_accepts(p) for p in self.ports.values()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.kind} not ready after {timeout}s: {self.log_tail()}")

    def _on_ready(self, log: bytes) -> None:
        """Note RabbitMQ's version; check that ours opened every listener it was given."""
        if self.kind == "rabbitmq":
            self.version = rabbitmq.version(log.decode(errors="replace"))
            return
        if self.kind != "ours":
            return
        for protocol, port in self.ports.items():
            if f"listening protocol={protocol} address=127.0.0.1:{port}".encode() not in log:
                raise BrokerUnavailable(
                    f"our broker does not listen for {protocol.upper()} (no "
                    f"'listening protocol={protocol}' in its log)"
                )

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(STOP_TIMEOUT[self.kind])
            for pid in session_pids(self.proc.pid):  # what a stop left running
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()
        for helper in self._helpers:
            helper.terminate()
            helper.wait(STOP_TIMEOUT["ours"])
        self._helpers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

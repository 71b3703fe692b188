"""Start and stop the brokers under test; read their CPU time and RSS from /proc."""

from __future__ import annotations

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

from benchmarks.loadgen import raise_nofile

REPO = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

OURS_CONFIG = """\
[listeners]
mqtt = "127.0.0.1:{port}"
amqp = false
xmpp = false
http = false
"""

MOSQUITTO_CONFIG = """\
listener {port} 127.0.0.1
allow_anonymous true
max_connections -1
max_queued_messages 1000
persistence false
connection_messages false
log_dest file {log}
user {user}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Broker:
    """One fresh broker process on a free loopback port; a context manager.

    ``kind`` is ``ours`` or ``mosquitto``.  ``ours_cmd`` replaces our broker's command
    line (placeholders ``{python} {port} {config} {data_dir}``) for dry runs.
    """

    def __init__(self, kind: str, log_path: Path, ours_cmd: str | None = None) -> None:
        self.kind = kind
        self.log_path = log_path
        self.ours_cmd = ours_cmd
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Broker:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-{self.kind}-")
        tmp = Path(self._tmp.name)
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)
        config = tmp / ("broker.toml" if self.kind == "ours" else "mosquitto.conf")
        if self.kind == "mosquitto":
            user = pwd.getpwuid(os.getuid()).pw_name
            config.write_text(MOSQUITTO_CONFIG.format(port=self.port, log=self.log_path, user=user))
            cmd = [MOSQUITTO, "-c", str(config)]
        else:
            config.write_text(OURS_CONFIG.format(port=self.port))
            template = (
                self.ours_cmd or "{python} -m broker serve --config {config} --data-dir {data_dir}"
            )
            cmd = shlex.split(
                template.format(
                    python=sys.executable, port=self.port, config=config, data_dir=tmp / "data"
                )
            )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=raise_nofile,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start: {self.log_tail()}")
            if self.kind == "ours" and b" ready" in self.log_path.read_bytes():
                return
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.kind} not listening after {START_TIMEOUT}s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

"""MQTT publish to XMPP pubsub notification (SPEC item 4), ours alone: no peer bridges
the two protocols.

An MQTT publisher (the QoS 0 load generator of the MQTT rows) publishes 64-byte stamped
payloads on ``bench/ps``; an XMPP session subscribed to node ``bench/ps`` at
``pubsub.localhost`` counts the notifications (``</message>`` per read).  The binary
payloads arrive base64 in the ``urn:broker:payload:0`` wrapper; the subscriber decodes
the last one of each read for a latency sample, and every one at the paced rate.

Target from the pubsub issue, measured by hand on the same run: notifications per second
at least 0.5x this broker's MQTT QoS 0 1->1 figure (the ``qos0`` row).
"""

from __future__ import annotations

import base64
import re
import socket
import struct
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

from benchmarks.batch import TS_OFF
from benchmarks.brokers import Broker
from benchmarks.loadgen import NAP, NAP_BELOW, RECV_BYTES, Job, Result, measured, start_signal
from benchmarks.measure import (
    THROUGHPUT_INFO,
    Figures,
    Metric,
    Scenario,
    Settings,
    flow,
    percentile,
)
from benchmarks.xmppwire import DOMAIN, Inbox, Login, _Conversation, login_all

SERVICE = f"pubsub.{DOMAIN}"
NODE = "bench/ps"
PACED_NODE = "bench/ps-paced"
SUBSCRIBER = "pubsub0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"

_SUBSCRIBED = re.compile(rb"subscription=['\"]subscribed['\"]")
_DATA = re.compile(rb"encoding=['\"]base64['\"]>([A-Za-z0-9+/=]+)</data>")


def accounts(s: Settings) -> list[str]:
    return [SUBSCRIBER]


@dataclass
class NotificationJob:
    """The XMPP subscriber: subscribes to ``node``, then counts notifications."""

    port: int
    name: str
    node: str
    every: bool = False  # a latency sample per notification, not per read

    def run(self, conn: Connection) -> None:
        try:
            (sock,) = login_all(self.port, [Login(SUBSCRIBER, self.name)])
            talk = _Conversation(sock)
            # the full JID: the paced run's session gets nothing meant for the flood's
            subscribe = f"<subscribe node='{self.node}' jid='{SUBSCRIBER}@{DOMAIN}/{self.name}'/>"
            sock.sendall(
                f"<iq type='set' id='sub' to='{SERVICE}'><pubsub xmlns='{NS_PUBSUB}'>"
                f"{subscribe}</pubsub></iq>".encode()
            )
            talk.expect(_SUBSCRIBED)
            tl = start_signal(conn)
            conn.send(("result", measured(lambda: _count(sock, self, tl))))
            sock.close()
        except Exception:
            conn.send(("error", f"{self.name}: {traceback.format_exc()}"))


def _stamp(encoded: bytes) -> int:
    return struct.unpack_from(">Q", base64.b64decode(encoded), TS_OFF)[0]


def _count(sock: socket.socket, job: NotificationJob, tl: tuple[int, int, int]) -> Result:
    _, t_start, t_end = tl
    sock.settimeout(0.05)
    inbox = Inbox()
    received = 0
    latencies: list[int] = []
    while (now := time.monotonic_ns()) < t_end:
        try:
            data = sock.recv(RECV_BYTES)
        except TimeoutError:
            continue
        if not data:
            raise ConnectionError("the broker closed the subscriber's stream")
        now = time.monotonic_ns()
        count, _ = inbox.feed(data)
        if t_start <= now < t_end and count:
            received += count
            found = _DATA.findall(data)
            for encoded in found if job.every else found[-1:]:
                latencies.append(now - _stamp(encoded))
        if not job.every and len(data) < NAP_BELOW:
            time.sleep(NAP)
    return {"received": received, "latencies": latencies}


def _publisher(b: Broker, name: str, node: str, rate: int = 0) -> Job:
    return Job("pub", b.port, name, [node], rate=rate)


def notifications(b: Broker, s: Settings) -> Figures:
    """Full-speed QoS 0 MQTT publishes, then a paced run for latency."""
    sub = NotificationJob(b.xmpp_port, "flood", NODE)
    sub_res, pub_res, cpu = flow(b, [sub], [_publisher(b, "pub", NODE)], s)
    received = sub_res[0]["received"]
    figures = {
        "rate": received / s.duration,
        "cpu_us": 1e6 * cpu / max(1, received),
        "p50_us": percentile(sub_res[0]["latencies"], 0.5),
        "broker_cpu_pct": 100 * cpu / s.duration,
        "loadgen_cpu_pct": 100 * sum(r["cpu"] for r in sub_res + pub_res),
    }
    # another node: what the flood left in the broker's buffers does not count here
    paced = NotificationJob(b.xmpp_port, "paced", PACED_NODE, every=True)
    sub_res, _, _ = flow(b, [paced], [_publisher(b, "paced-pub", PACED_NODE, s.rate)], s)
    samples = sub_res[0]["latencies"]
    figures |= {
        "paced_rate": sub_res[0]["received"] / s.duration,
        "paced_p50_us": percentile(samples, 0.5),
        "paced_p99_us": percentile(samples, 0.99),
    }
    return figures


SCENARIOS: dict[str, Scenario] = {
    "xmpp-pubsub": Scenario(
        notifications,
        [
            Metric("rate", "MQTT QoS 0 -> pubsub notifications/s", "higher"),
            Metric("cpu_us", "broker CPU µs/notification", "lower"),
            Metric("p50_us", "p50 latency at full speed µs", "lower"),
            Metric("paced_rate", "paced: notifications/s", ""),
            Metric("paced_p50_us", "paced: p50 latency µs", "lower"),
            Metric("paced_p99_us", "paced: p99 latency µs", "lower"),
            *THROUGHPUT_INFO,
        ],
        peers=(),
        protocols=("mqtt", "xmpp"),
        accounts=accounts,
    ),
}

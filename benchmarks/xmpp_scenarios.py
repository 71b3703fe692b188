"""XMPP scenarios, compared with Prosody and ejabberd.

Targets from the XMPP issue, on the same run: one-to-one chat throughput at least 2.0x
Prosody's and 1.0x ejabberd's; idle sessions at most 20 KiB of RSS each.
"""

from __future__ import annotations

import time

from benchmarks.brokers import Broker, rss_kib
from benchmarks.loadgen import Fleet
from benchmarks.measure import (
    THROUGHPUT_INFO,
    Figures,
    Metric,
    Scenario,
    Settings,
    Target,
    flow,
)
from benchmarks.xmppload import XmppJob, idle_logins, pair_accounts

PAIRS = 10
WORKERS = 2  # load generator processes per role
SETTLE = 2.0  # seconds between the last login and the RSS reading


def _split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def chat(b: Broker, s: Settings) -> Figures:
    """10 pairs, each a sender streaming chat messages to its receiver's full JID, at
    most ``s.window`` unconfirmed: messages delivered/s."""
    pairs = _split(list(range(PAIRS)), WORKERS)
    receivers = [XmppJob("receiver", b.xmpp_port, f"recv{n}", p) for n, p in enumerate(pairs)]
    senders = [
        XmppJob("sender", b.xmpp_port, f"send{n}", p, window=s.window, batch=s.xmpp_batch)
        for n, p in enumerate(pairs)
    ]
    sub_res, pub_res, cpu = flow(b, receivers, senders, s)
    received = sum(r["received"] for r in sub_res)
    return {
        "rate": received / s.duration,
        "cpu_us": 1e6 * cpu / max(1, received),
        "broker_cpu_pct": 100 * cpu / s.duration,
        "loadgen_cpu_pct": 100 * sum(r["cpu"] for r in sub_res + pub_res),
    }


def idle(b: Broker, s: Settings) -> Figures:
    """``s.xmpp_sessions`` accounts with one session each, logged in (PLAIN, bind,
    initial presence), then idle: the broker's RSS growth per session."""
    before = rss_kib(b.pid)
    logins = idle_logins(s.xmpp_sessions)
    jobs = [
        XmppJob("idle", b.xmpp_port, f"idle{n}", logins=part)
        for n, part in enumerate(_split(logins, WORKERS))
    ]
    with Fleet() as fleet:
        sessions = sum(fleet.start(jobs))
        time.sleep(SETTLE)
        after = rss_kib(b.pid)
        fleet.send("close")
        fleet.results(timeout=60)
    return {
        "sessions": sessions,
        "kib_per_session": (after - before) / sessions,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
    }


def _idle_accounts(s: Settings) -> list[str]:
    return [x.user for x in idle_logins(s.xmpp_sessions)]


PEERS = ("prosody", "ejabberd")
SCENARIOS: dict[str, Scenario] = {
    "xmpp-chat": Scenario(
        chat,
        [
            Metric(
                "rate",
                "chat 10 pairs delivered msg/s",
                "higher",
                (Target("ratio", 2.0, peer="prosody"), Target("ratio", 1.0, peer="ejabberd")),
            ),
            Metric("cpu_us", "broker CPU µs/msg", "lower"),
            *THROUGHPUT_INFO,
        ],
        peers=PEERS,
        protocols=("xmpp",),
        accounts=lambda s: pair_accounts(PAIRS),
    ),
    "xmpp-idle": Scenario(
        idle,
        [
            Metric("sessions", "idle sessions", ""),
            Metric(
                "kib_per_session",
                "RSS KiB per idle session",
                "lower",
                (Target("ours", 20.0, most=True),),
            ),
            Metric("rss_before_mib", "RSS before MiB", ""),
            Metric("rss_after_mib", "RSS after MiB", ""),
        ],
        peers=PEERS,
        protocols=("xmpp",),
        accounts=_idle_accounts,
    ),
}

"""MQTT scenarios, compared with Mosquitto; each also runs over MQTT 5 as ``<name>-v5``."""

from __future__ import annotations

import time

from benchmarks.brokers import Broker, rss_kib
from benchmarks.loadgen import Fleet, Job
from benchmarks.measure import (
    THROUGHPUT_INFO,
    Figures,
    Metric,
    Scenario,
    Settings,
    flow,
    percentile,
    throughput,
)


def _split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def _job(b: Broker, s: Settings, kind: str, name: str, topics: list[str], **kw: int) -> Job:
    return Job(kind, b.port, name, topics, version=s.version, **kw)


def qos0(b: Broker, s: Settings) -> Figures:
    sub = _job(b, s, "sub", "sub", ["bench/t"])
    return throughput(b, [sub], [_job(b, s, "pub", "pub", ["bench/t"])], s)


def qos1(b: Broker, s: Settings) -> Figures:
    sub = _job(b, s, "sub", "sub", ["bench/t"], qos=1)
    pub = _job(b, s, "pub", "pub", ["bench/t"], qos=1, window=s.window)
    return throughput(b, [sub], [pub], s)


def fanout(b: Broker, s: Settings) -> Figures:
    subs = [
        _job(b, s, "sub", f"sub{i}", topics)
        for i, topics in enumerate(_split(["bench/fan"] * s.fan, 2))
    ]
    return throughput(b, subs, [_job(b, s, "pub", "pub", ["bench/fan"])], s)


def fanin(b: Broker, s: Settings) -> Figures:
    topics = [f"bench/{i:03d}/t" for i in range(s.fan)]
    pubs = [_job(b, s, "pub", f"pub{i}", t) for i, t in enumerate(_split(topics, 2))]
    return throughput(b, [_job(b, s, "sub", "sub", ["bench/+/t"])], pubs, s)


def latency(b: Broker, s: Settings) -> Figures:
    figures: Figures = {}
    for qos in (0, 1):
        sub = _job(b, s, "sub", f"sub{qos}", ["bench/lat"], qos=qos, latency=True)
        pub = _job(b, s, "pub", f"pub{qos}", ["bench/lat"], qos=qos, rate=s.rate)
        sub_res, _, cpu = flow(b, [sub], [pub], s)
        samples = sub_res[0]["latencies"]
        figures |= {
            f"q{qos}_rate": sub_res[0]["received"] / s.duration,
            f"q{qos}_p50_us": percentile(samples, 0.5),
            f"q{qos}_p99_us": percentile(samples, 0.99),
            f"q{qos}_cpu_us": 1e6 * cpu / max(1, sub_res[0]["received"]),
        }
    return figures


def idle(b: Broker, s: Settings) -> Figures:
    before = rss_kib(b.pid)
    names = [f"idle{i}" for i in range(2)]
    with Fleet() as fleet:
        counts = fleet.start(
            [_job(b, s, "idle", n, [], count=s.idle_conns // len(names)) for n in names]
        )
        time.sleep(1.0)
        after = rss_kib(b.pid)
        fleet.send("close")
        fleet.results(timeout=30)
    return {
        "connected": sum(counts),
        "kib_per_conn": (after - before) / sum(counts),
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
    }


SCENARIOS: dict[str, Scenario] = {
    "qos0": Scenario(qos0, [Metric("rate", "QoS 0 1->1 msg/s", "higher"), *THROUGHPUT_INFO]),
    "qos1": Scenario(qos1, [Metric("rate", "QoS 1 1->1 msg/s", "higher"), *THROUGHPUT_INFO]),
    "fanout": Scenario(
        fanout, [Metric("rate", "fan-out 1->100 deliveries/s", "higher"), *THROUGHPUT_INFO]
    ),
    "fanin": Scenario(fanin, [Metric("rate", "fan-in 100->1 msg/s", "higher"), *THROUGHPUT_INFO]),
    "latency": Scenario(
        latency,
        [
            m
            for q in (0, 1)
            for m in (
                Metric(f"q{q}_rate", f"QoS {q} delivered msg/s at fixed rate", ""),
                Metric(f"q{q}_p50_us", f"QoS {q} p50 latency µs", "lower"),
                Metric(f"q{q}_p99_us", f"QoS {q} p99 latency µs", "lower"),
                Metric(f"q{q}_cpu_us", f"QoS {q} broker CPU µs/msg", "lower"),
            )
        ],
    ),
    "idle": Scenario(
        idle,
        [
            Metric("connected", "idle connections", ""),
            Metric("kib_per_conn", "RSS KiB per idle connection", "lower"),
            Metric("rss_before_mib", "RSS before MiB", ""),
            Metric("rss_after_mib", "RSS after MiB", ""),
        ],
    ),
}

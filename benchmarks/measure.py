"""What a scenario is and how one measures: settings, metrics, one timed flow of workers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.brokers import Broker, cpu_seconds
from benchmarks.loadgen import Fleet, Result, Worker


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    rate: int
    window: int
    fan: int
    idle_conns: int
    version: int = 4
    prefetch: int = 100
    ack_every: int = 50
    xmpp_sessions: int = 5000
    xmpp_batch: int = 100


@dataclass(frozen=True)
class Target:
    """A goal for ours: its ``ratio`` against the peer, or its own figure (``ours``), at
    least ``bound`` (at most, if ``most``); in the table of ``peer`` only, if given."""

    of: str  # "ratio" or "ours"
    bound: float
    most: bool = False
    peer: str | None = None

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        value = ratio if self.of == "ratio" else ours
        if value is None:
            return None
        return value <= self.bound if self.most else value >= self.bound


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str  # "higher", "lower" or "" for information only
    targets: tuple[Target, ...] = ()

    def target(self, peer: str) -> Target | None:
        """The goal shown in ``peer``'s table, if any."""
        return next((t for t in self.targets if t.peer in (None, peer)), None)


Figures = dict[str, float]


@dataclass(frozen=True)
class Scenario:
    """A load, what it reports, the peer brokers ours is compared with (none: a table of
    ours alone), the listeners (``mqtt``, ``amqp``, ``xmpp``, ``http``) every broker needs
    for it, and the XMPP accounts it logs in with."""

    run: Callable[[Broker, Settings], Figures]
    metrics: list[Metric]
    peers: tuple[str, ...] = ("mosquitto",)
    protocols: tuple[str, ...] = ("mqtt",)
    accounts: Callable[[Settings], list[str]] | None = None


THROUGHPUT_INFO = [
    Metric("broker_cpu_pct", "broker CPU %", ""),
    Metric("loadgen_cpu_pct", "loadgen CPU % (all procs)", ""),
]


def _sleep_until(t: int) -> None:
    time.sleep(max(0.0, (t - time.monotonic_ns()) / 1e9))


def flow(
    broker: Broker, subs: Sequence[Worker], pubs: Sequence[Worker], s: Settings
) -> tuple[list[Result], list[Result], float]:
    """Run subscribers and publishers on one timeline; return their results and the
    broker's CPU seconds over the measured window."""
    with Fleet() as fleet:
        fleet.start(subs)
        fleet.start(pubs)
        t0 = time.monotonic_ns() + 100_000_000
        t_start = t0 + int(s.warmup * 1e9)
        t_end = t_start + int(s.duration * 1e9)
        fleet.send((t0, t_start, t_end))
        _sleep_until(t_start)
        cpu0 = cpu_seconds(broker.pid)
        _sleep_until(t_end)
        cpu = cpu_seconds(broker.pid) - cpu0
        results = fleet.results(timeout=30)
    return results[: len(subs)], results[len(subs) :], cpu


def percentile(samples: list[int], q: float) -> float:
    """The q-quantile of nanosecond samples, in microseconds."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def throughput(
    broker: Broker, subs: Sequence[Worker], pubs: Sequence[Worker], s: Settings
) -> Figures:
    """Deliveries per second, CPU and median latency of one flow, and confirmed publishes
    per second when the publishers count confirms."""
    sub_res, pub_res, cpu = flow(broker, subs, pubs, s)
    figures = {
        "rate": sum(r["received"] for r in sub_res) / s.duration,
        "broker_cpu_pct": 100 * cpu / s.duration,
        "loadgen_cpu_pct": 100 * sum(r["cpu"] for r in sub_res + pub_res),
        "p50_us": percentile([x for r in sub_res for x in r["latencies"]], 0.5),
    }
    if any("confirmed" in r for r in pub_res):
        figures["confirmed_rate"] = sum(r.get("confirmed", 0) for r in pub_res) / s.duration
    return figures

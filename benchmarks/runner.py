"""Side-by-side MQTT benchmark of our broker and Mosquitto on loopback.

    python -m benchmarks.runner [--only qos0,fanout-v5] [--duration 5] [--quick]
                                [--brokers ours,mosquitto] [--json OUT]

Each scenario runs against a freshly started broker of each kind; the table's ratio is
ours/mosquitto for rates and mosquitto/ours for costs, so above 1 means ours is better.
Every scenario also exists as ``<name>-v5``: the same load over MQTT 5, each PUBLISH with
a user property and a topic alias; a second table sets v5 beside 3.1.1 for each broker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from benchmarks.brokers import MOSQUITTO, Broker, cpu_seconds, rss_kib
from benchmarks.loadgen import Fleet, Job, Result, raise_nofile

RESULTS = Path(__file__).resolve().parent / "results"
BROKERS = ("ours", "mosquitto")


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    rate: int
    window: int
    fan: int
    idle_conns: int
    version: int = 4


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str  # "higher", "lower" or "" for information only


Figures = dict[str, float]
THROUGHPUT_INFO = [
    Metric("broker_cpu_pct", "broker CPU %", ""),
    Metric("loadgen_cpu_pct", "loadgen CPU % (all procs)", ""),
]


def idle_cpu_pct(seconds: float = 1.0) -> float:
    """Share of all CPUs idle over ``seconds``: other load on the machine skews results."""

    def sample() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]

    a = sample()
    time.sleep(seconds)
    d = [y - x for x, y in zip(a, sample(), strict=True)]
    return 100 * (d[3] + d[4]) / max(1, sum(d))


def _sleep_until(t: int) -> None:
    time.sleep(max(0.0, (t - time.monotonic_ns()) / 1e9))


def _flow(
    broker: Broker, subs: list[Job], pubs: list[Job], s: Settings
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


def _percentile(samples: list[int], q: float) -> float:
    """The q-quantile of nanosecond samples, in microseconds."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def _throughput(broker: Broker, subs: list[Job], pubs: list[Job], s: Settings) -> Figures:
    sub_res, pub_res, cpu = _flow(broker, subs, pubs, s)
    return {
        "rate": sum(r["received"] for r in sub_res) / s.duration,
        "broker_cpu_pct": 100 * cpu / s.duration,
        "loadgen_cpu_pct": 100 * sum(r["cpu"] for r in sub_res + pub_res),
        "p50_us": _percentile([x for r in sub_res for x in r["latencies"]], 0.5),
    }


def _split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def _job(b: Broker, s: Settings, kind: str, name: str, topics: list[str], **kw: int) -> Job:
    return Job(kind, b.port, name, topics, version=s.version, **kw)


def qos0(b: Broker, s: Settings) -> Figures:
    sub = _job(b, s, "sub", "sub", ["bench/t"])
    return _throughput(b, [sub], [_job(b, s, "pub", "pub", ["bench/t"])], s)


def qos1(b: Broker, s: Settings) -> Figures:
    sub = _job(b, s, "sub", "sub", ["bench/t"], qos=1)
    pub = _job(b, s, "pub", "pub", ["bench/t"], qos=1, window=s.window)
    return _throughput(b, [sub], [pub], s)


def fanout(b: Broker, s: Settings) -> Figures:
    subs = [
        _job(b, s, "sub", f"sub{i}", topics)
        for i, topics in enumerate(_split(["bench/fan"] * s.fan, 2))
    ]
    return _throughput(b, subs, [_job(b, s, "pub", "pub", ["bench/fan"])], s)


def fanin(b: Broker, s: Settings) -> Figures:
    topics = [f"bench/{i:03d}/t" for i in range(s.fan)]
    pubs = [_job(b, s, "pub", f"pub{i}", t) for i, t in enumerate(_split(topics, 2))]
    return _throughput(b, [_job(b, s, "sub", "sub", ["bench/+/t"])], pubs, s)


def latency(b: Broker, s: Settings) -> Figures:
    figures: Figures = {}
    for qos in (0, 1):
        sub = _job(b, s, "sub", f"sub{qos}", ["bench/lat"], qos=qos, latency=True)
        pub = _job(b, s, "pub", f"pub{qos}", ["bench/lat"], qos=qos, rate=s.rate)
        sub_res, _, cpu = _flow(b, [sub], [pub], s)
        samples = sub_res[0]["latencies"]
        figures |= {
            f"q{qos}_rate": sub_res[0]["received"] / s.duration,
            f"q{qos}_p50_us": _percentile(samples, 0.5),
            f"q{qos}_p99_us": _percentile(samples, 0.99),
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


SCENARIOS: dict[str, tuple[Callable[[Broker, Settings], Figures], list[Metric]]] = {
    "qos0": (qos0, [Metric("rate", "QoS 0 1->1 msg/s", "higher"), *THROUGHPUT_INFO]),
    "qos1": (qos1, [Metric("rate", "QoS 1 1->1 msg/s", "higher"), *THROUGHPUT_INFO]),
    "fanout": (fanout, [Metric("rate", "fan-out 1->100 deliveries/s", "higher"), *THROUGHPUT_INFO]),
    "fanin": (fanin, [Metric("rate", "fan-in 100->1 msg/s", "higher"), *THROUGHPUT_INFO]),
    "latency": (
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
    "idle": (
        idle,
        [
            Metric("connected", "idle connections", ""),
            Metric("kib_per_conn", "RSS KiB per idle connection", "lower"),
            Metric("rss_before_mib", "RSS before MiB", ""),
            Metric("rss_after_mib", "RSS after MiB", ""),
        ],
    ),
}


V5 = "-v5"
NAMES = [n + suffix for n in SCENARIOS for suffix in ("", V5)]


def _scenario(name: str) -> tuple[str, int]:
    """Base scenario and MQTT protocol level of a name such as ``qos0-v5``."""
    return (name.removesuffix(V5), 5) if name.endswith(V5) else (name, 4)


def _fmt(v: float | None) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def _ratio(m: Metric, figures: dict[str, Figures]) -> float | None:
    ours, theirs = figures.get("ours", {}).get(m.key), figures.get("mosquitto", {}).get(m.key)
    if not m.better or not ours or not theirs:
        return None
    return ours / theirs if m.better == "higher" else theirs / ours


def _layout(rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned columns: the first two left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def table(results: dict[str, dict[str, Figures]]) -> str:
    rows = [("scenario", "metric", "ours", "mosquitto", "ratio")]
    for name, by_broker in results.items():
        for m in SCENARIOS[_scenario(name)[0]][1]:
            vals = [by_broker.get(b, {}).get(m.key) for b in BROKERS]
            rows.append((name, m.label, *map(_fmt, vals), _x(_ratio(m, by_broker))))
    return _layout(rows) + "\nratio: ours/mosquitto for rates, mosquitto/ours for costs"


def version_table(results: dict[str, dict[str, Figures]]) -> str:
    """MQTT 5 beside 3.1.1 for each broker, for scenarios measured both ways."""
    rows = [("scenario", "metric")]
    rows[0] += tuple(f"{b} {col}" for b in BROKERS for col in ("3.1.1", "5", "5/3.1.1"))
    for name in results:
        v5 = results.get(name + V5)
        if v5 is None:
            continue
        for m in SCENARIOS[name][1]:
            if not m.better:
                continue
            row: tuple[str, ...] = (name, m.label)
            for b in BROKERS:
                old, new = results[name].get(b, {}).get(m.key), v5.get(b, {}).get(m.key)
                ratio = None
                if old and new:
                    ratio = new / old if m.better == "higher" else old / new
                row += (_fmt(old), _fmt(new), _x(ratio))
            rows.append(row)
    if len(rows) == 1:
        return ""
    return _layout(rows) + "\n5/3.1.1: MQTT 5 over 3.1.1 for rates, 3.1.1 over 5 for costs"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.runner", description=__doc__)
    p.add_argument("--only", default=",".join(NAMES), help="comma-separated scenarios")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--brokers", default=",".join(BROKERS))
    p.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--quick", action="store_true", help="short runs (whole suite < 2 min)")
    p.add_argument("--rate", type=int, default=10_000, help="offered msg/s for latency")
    p.add_argument("--window", type=int, default=1000, help="QoS 1 publisher unacked window")
    p.add_argument("--idle-conns", type=int, default=10_000)
    p.add_argument("--ours-cmd", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    scenarios = args.only.split(",")
    brokers = args.brokers.split(",")
    unknown = set(scenarios) - set(NAMES) | set(brokers) - set(BROKERS)
    if unknown:
        p.error(f"unknown scenario or broker: {', '.join(sorted(unknown))}")
    if "mosquitto" in brokers and not Path(MOSQUITTO).exists():
        print("mosquitto not installed; measuring ours only", file=sys.stderr)
        brokers.remove("mosquitto")
    if args.quick:
        args.duration, args.warmup = min(args.duration, 2.0), min(args.warmup, 0.5)
    settings = Settings(
        args.duration, args.warmup, args.rate, args.window, fan=100, idle_conns=args.idle_conns
    )
    raise_nofile()
    idle_before = idle_cpu_pct()
    if idle_before < 90:
        print(
            f"warning: machine only {idle_before:.0f}% idle; figures will be noisy", file=sys.stderr
        )

    results: dict[str, dict[str, Figures]] = {}
    errors: list[str] = []
    for name in scenarios:
        base, version = _scenario(name)
        run = SCENARIOS[base][0]
        for kind in brokers:
            log = RESULTS / "logs" / f"{name}-{kind}.log"
            started = time.monotonic()
            try:
                with Broker(kind, log, args.ours_cmd) as broker:
                    figures = run(broker, replace(settings, version=version))
            except Exception:
                errors.append(f"{name}/{kind}: {traceback.format_exc()}")
                print(f"{name}/{kind}: FAILED (see JSON; broker log {log})", file=sys.stderr)
                continue
            results.setdefault(name, {})[kind] = figures
            summary = ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
            print(f"{name}/{kind} ({time.monotonic() - started:.0f}s): {summary}", file=sys.stderr)

    print(table(results))
    if versions := version_table(results):
        print("\n" + versions)
    version = ""
    if "mosquitto" in brokers:
        version = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    report = {
        "settings": asdict(settings),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "idle_pct_before": idle_before,
        },
        "mosquitto": version.splitlines()[0] if version else None,
        "results": results,
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

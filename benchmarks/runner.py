"""Side-by-side benchmarks of our broker and its peers on loopback.

    python -m benchmarks.runner [--only qos0,fanout-v5,amqp-transient] [--duration 5]
                                [--quick] [--brokers ours,mosquitto,rabbitmq] [--json OUT]
    python -m benchmarks.runner --only xmpp      # a protocol's name selects all its rows
    python -m benchmarks.runner --only ws        # WebSocket: MQTT over it, native /ws

Each scenario names its peers: Mosquitto for the MQTT rows, RabbitMQ for the AMQP rows,
Prosody and ejabberd for the XMPP rows, Mosquitto's websockets listener for MQTT over
WebSocket; the native WebSocket rows have no peer and get a table of their own.  It runs
against a freshly started broker of each kind selected; each peer's table gives the ratio
ours/peer for rates and peer/ours for costs, so above 1 means ours is better.  Every
MQTT scenario also exists as ``<name>-v5``: the same load over MQTT 5, each PUBLISH with a
user property and a topic alias; a second table sets v5 beside 3.1.1 for each broker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks import (
    amqp_scenarios,
    mqtt_scenarios,
    pyspy,
    ws_scenarios,
    xmpp_muc,
    xmpp_pubsub,
    xmpp_scenarios,
)
from benchmarks.brokers import KINDS, Broker, BrokerUnavailable, installed, unsupported
from benchmarks.loadgen import raise_nofile
from benchmarks.measure import Figures, Scenario, Settings
from benchmarks.report import V5, fmt, solo_table, table, version_table

RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ("mosquitto", "rabbitmq", "prosody", "ejabberd")
MQTT_CATALOG: dict[str, Scenario] = {
    name + suffix: scenario
    for name, scenario in mqtt_scenarios.SCENARIOS.items()
    for suffix in ("", V5)
}
GROUPS = {
    "mqtt": list(MQTT_CATALOG),
    "amqp": list(amqp_scenarios.SCENARIOS),
    "xmpp": list(xmpp_scenarios.SCENARIOS) + list(xmpp_muc.SCENARIOS) + list(xmpp_pubsub.SCENARIOS),
    "ws": list(ws_scenarios.SCENARIOS),
}
CATALOG = (
    MQTT_CATALOG | amqp_scenarios.SCENARIOS | xmpp_scenarios.SCENARIOS | ws_scenarios.SCENARIOS
)
CATALOG |= xmpp_muc.SCENARIOS
CATALOG |= xmpp_pubsub.SCENARIOS
NAMES = list(CATALOG)


def selected(only: str) -> list[str]:
    """The scenarios named in ``only``, a protocol's name standing for all of its own."""
    names: list[str] = []
    for item in only.split(","):
        names += [n for n in GROUPS.get(item, [item]) if n not in names]
    return names


def idle_cpu_pct(seconds: float = 1.0) -> float:
    """Share of all CPUs idle over ``seconds``: other load on the machine skews results."""

    def sample() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]

    a = sample()
    time.sleep(seconds)
    d = [y - x for x, y in zip(a, sample(), strict=True)]
    return 100 * (d[3] + d[4]) / max(1, sum(d))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.runner", description=__doc__)
    p.add_argument(
        "--only",
        default=",".join(NAMES),
        help="comma-separated scenarios, or mqtt, amqp, xmpp, ws for all of a protocol's",
    )
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--brokers", default=",".join(KINDS), help="ours and/or peers")
    p.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--quick", action="store_true", help="short runs")
    p.add_argument("--rate", type=int, default=10_000, help="offered msg/s for latency")
    p.add_argument(
        "--window", type=int, default=1000, help="MQTT QoS 1 / AMQP confirms: unacked publishes"
    )
    p.add_argument("--prefetch", type=int, default=100, help="AMQP manual-ack consumer prefetch")
    p.add_argument("--ack-every", type=int, default=50, help="AMQP consumer: deliveries per ack")
    p.add_argument("--idle-conns", type=int, default=10_000)
    p.add_argument("--xmpp-sessions", type=int, default=5000, help="XMPP idle sessions")
    p.add_argument("--xmpp-batch", type=int, default=100, help="XMPP chat: messages per ping")
    p.add_argument(
        "--xmpp-archive", action="store_true", help="Prosody and ejabberd archive chats (MAM)"
    )
    p.add_argument("--profile", type=Path, help="py-spy our broker into DIR/<scenario>.txt")
    p.add_argument("--ours-cmd", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    scenarios = selected(args.only)
    brokers = args.brokers.split(",")
    unknown = set(scenarios) - set(NAMES) | set(brokers) - set(KINDS)
    if unknown:
        p.error(f"unknown scenario or broker: {', '.join(sorted(unknown))}")
    for kind in [b for b in brokers if not installed(b)]:
        print(f"{kind} not installed; skipping its runs", file=sys.stderr)
        brokers.remove(kind)
    if args.quick:
        args.duration, args.warmup = min(args.duration, 2.0), min(args.warmup, 0.5)
    settings = Settings(
        args.duration,
        args.warmup,
        args.rate,
        args.window,
        fan=100,
        idle_conns=args.idle_conns,
        prefetch=args.prefetch,
        ack_every=args.ack_every,
        xmpp_sessions=args.xmpp_sessions,
        xmpp_batch=args.xmpp_batch,
    )
    raise_nofile()
    idle_before = idle_cpu_pct()
    if idle_before < 90:
        print(
            f"warning: machine only {idle_before:.0f}% idle; figures will be noisy", file=sys.stderr
        )

    results: dict[str, dict[str, Figures]] = {}
    versions: dict[str, str | None] = {}
    errors: list[str] = []
    skipped: list[str] = []
    for name in scenarios:
        scenario = CATALOG[name]
        version = 5 if name.endswith(V5) else 4
        accounts = scenario.accounts(settings) if scenario.accounts else None
        for kind in [b for b in brokers if b in ("ours", *scenario.peers)]:
            if reason := unsupported(kind, scenario.protocols):
                skipped.append(f"{name}/{kind}: {reason}")
                print(f"{name}/{kind}: skipped: {reason}", file=sys.stderr)
                continue
            log = RESULTS / "logs" / f"{name}-{kind}.log"
            started = time.monotonic()
            try:
                with Broker(
                    kind, log, args.ours_cmd, scenario.protocols, accounts, args.xmpp_archive
                ) as broker:
                    versions.setdefault(kind, broker.version)
                    profile = args.profile / f"{name}.txt" if args.profile else None
                    profile = profile if kind == "ours" else None
                    spy = pyspy.recording(broker.pid, profile) if profile else None
                    with spy or contextlib.nullcontext():
                        figures = scenario.run(broker, replace(settings, version=version))
                    if profile:
                        print(pyspy.summary(profile), file=sys.stderr)
            except BrokerUnavailable as e:
                skipped.append(f"{name}/{kind}: {e}")
                print(f"{name}/{kind}: skipped: {e}", file=sys.stderr)
                continue
            except Exception:
                errors.append(f"{name}/{kind}: {traceback.format_exc()}")
                print(f"{name}/{kind}: FAILED (see JSON; broker log {log})", file=sys.stderr)
                continue
            results.setdefault(name, {})[kind] = figures
            summary = ", ".join(f"{k}={fmt(v)}" for k, v in figures.items())
            print(f"{name}/{kind} ({time.monotonic() - started:.0f}s): {summary}", file=sys.stderr)

    tables = []
    for peer in PEERS:
        if any(peer in CATALOG[n].peers for n in results):
            tables.append(table(results, CATALOG, peer))
        if peer == "mosquitto" and (versus := version_table(results, CATALOG)):
            tables.append(versus)
    if solo := solo_table(results, CATALOG):
        tables.append(solo)
    if tables:
        print("\n\n".join(tables))
    report = {
        "settings": asdict(settings),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "idle_pct_before": idle_before,
        },
        **{peer: versions.get(peer) for peer in PEERS},
        "results": results,
        "skipped": skipped,
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

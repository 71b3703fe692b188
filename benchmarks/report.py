"""The runner's tables: ours beside each peer broker, and MQTT 5 beside MQTT 3.1.1.

A scenario with several peers (XMPP: Prosody and ejabberd) appears in each one's table;
scenarios with none (the native WebSocket protocol) share a table of ours alone.
"""

from __future__ import annotations

from benchmarks.measure import Figures, Metric, Scenario

Results = dict[str, dict[str, Figures]]  # scenario -> broker kind -> figures
V5 = "-v5"
MQTT_BROKERS = ("ours", "mosquitto")


def fmt(v: float | None) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def _ratio(m: Metric, figures: dict[str, Figures], peer: str) -> float | None:
    ours, theirs = figures.get("ours", {}).get(m.key), figures.get(peer, {}).get(m.key)
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


def _target(m: Metric, peer: str, ours: float | None, ratio: float | None) -> str:
    target = m.target(peer)
    if target is None:
        return ""
    met = target.met(ours, ratio)
    verdict = "" if met is None else ": met" if met else ": NOT met"
    return f"{target.of} {'<=' if target.most else '>='} {target.bound:.1f}{verdict}"


def table(results: Results, catalog: dict[str, Scenario], peer: str) -> str:
    """Every scenario compared with ``peer``: ours, the peer, the ratio, and the target
    column if any of its metrics has one."""
    names = [n for n in results if peer in catalog[n].peers]
    targets = any(m.target(peer) for n in names for m in catalog[n].metrics)
    rows = [("scenario", "metric", "ours", peer, "ratio", *(("target",) if targets else ()))]
    for name in names:
        by_broker = results[name]
        for m in catalog[name].metrics:
            ours, theirs = (by_broker.get(b, {}).get(m.key) for b in ("ours", peer))
            ratio = _ratio(m, by_broker, peer)
            row = (name, m.label, fmt(ours), fmt(theirs), _x(ratio))
            rows.append(row + ((_target(m, peer, ours, ratio),) if targets else ()))
    return _layout(rows) + f"\nratio: ours/{peer} for rates, {peer}/ours for costs"


def version_table(results: Results, catalog: dict[str, Scenario]) -> str:
    """MQTT 5 beside 3.1.1 for each broker, for scenarios measured both ways."""
    rows = [("scenario", "metric")]
    rows[0] += tuple(f"{b} {col}" for b in MQTT_BROKERS for col in ("3.1.1", "5", "5/3.1.1"))
    for name in results:
        v5 = results.get(name + V5)
        if v5 is None:
            continue
        for m in catalog[name].metrics:
            if not m.better:
                continue
            row: tuple[str, ...] = (name, m.label)
            for b in MQTT_BROKERS:
                old, new = results[name].get(b, {}).get(m.key), v5.get(b, {}).get(m.key)
                ratio = None
                if old and new:
                    ratio = new / old if m.better == "higher" else old / new
                row += (fmt(old), fmt(new), _x(ratio))
            rows.append(row)
    if len(rows) == 1:
        return ""
    return _layout(rows) + "\n5/3.1.1: MQTT 5 over 3.1.1 for rates, 3.1.1 over 5 for costs"


def solo_table(results: Results, catalog: dict[str, Scenario]) -> str:
    """Scenarios without a peer: ours, and the target column."""
    rows = [("scenario", "metric", "ours", "target")]
    for name in [n for n in results if not catalog[n].peers]:
        for m in catalog[name].metrics:
            ours = results[name].get("ours", {}).get(m.key)
            rows.append((name, m.label, fmt(ours), _target(m, "ours", ours, None)))
    if len(rows) == 1:
        return ""
    return _layout(rows) + "\nno peer broker: targets are on ours' own figures"

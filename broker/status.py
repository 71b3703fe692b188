"""``broker status``: the management API's overview, for a shell.

It asks ``GET /api/overview`` with HTTP Basic credentials (guest/guest by default, which
works from loopback) and prints listeners, connections per protocol and queue totals.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request
from typing import Any


def fetch_overview(url: str, user: str, password: str, timeout: float) -> dict[str, Any]:
    """The overview, or exit with one line saying why not."""
    endpoint = url.rstrip("/") + "/api/overview"
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(endpoint, headers={"Authorization": f"Basic {credentials}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        sys.exit(f"broker: {endpoint} answered {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        sys.exit(f"broker: management API unreachable at {url}: {reason}")


def render(overview: dict[str, Any]) -> str:
    lines = [f"{overview['product_name']} {overview['product_version']}"]
    lines.append("listeners:")
    for listener in overview["listeners"]:
        lines.append(f"  {listener['protocol']:<8}{listener['ip_address']}:{listener['port']}")
    by_protocol = overview["connections_by_protocol"]
    counts = ", ".join(f"{name} {count}" for name, count in by_protocol.items())
    total = overview["object_totals"]["connections"]
    lines.append(f"connections: {total}" + (f" ({counts})" if counts else ""))
    queues, totals = overview["object_totals"]["queues"], overview["queue_totals"]
    lines.append(
        f"queues: {queues}, messages {totals['messages']} "
        f"(ready {totals['messages_ready']}, unacked {totals['messages_unacknowledged']})"
    )
    stats = overview["message_stats"]
    lines.append(
        f"rates: publish {stats['publish_details']['rate']:.1f}/s, "
        f"deliver {stats['deliver_get_details']['rate']:.1f}/s"
    )
    return "\n".join(lines)


def status(args: argparse.Namespace) -> None:
    print(render(fetch_overview(args.url, args.user, args.password, args.timeout)))

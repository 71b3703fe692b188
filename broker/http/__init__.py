"""The HTTP listener: h11 for requests, wsproto for WebSocket upgrades, and the broker's
own HTTP services (management API, metrics, health, dashboard)."""

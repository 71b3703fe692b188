"""Load generator and side-by-side MQTT benchmarks against peer brokers."""

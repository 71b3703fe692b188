"""Load generators and side-by-side MQTT and AMQP benchmarks against peer brokers."""

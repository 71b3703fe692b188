"""The AMQP 0-9-1 front end: a sans-I/O codec and connection state machine on pamqp, and
a thin trio adapter (``server``) onto the routing core."""

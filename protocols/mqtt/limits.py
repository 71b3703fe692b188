"""Per-connection output limits shared by the connection and its session."""

#: Bytes queued for a peer beyond which its session stops taking deliveries.
OUTPUT_HIGH_WATER = 1 << 21
#: Bytes queued for a peer beyond which publishers wait for it (broker.flow).
OUTPUT_BACKLOG = 1 << 19

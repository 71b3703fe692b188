"""WebSocket front ends: the native protocol of SPEC item 3, and the hand-over of
WebSocket connections to the MQTT and XMPP front ends."""

"""XMPP client-to-server front end (RFC 6120/6121 and the IM extensions)."""

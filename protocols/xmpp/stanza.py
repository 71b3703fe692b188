"""Building and serializing stanzas, and the stanza errors of RFC 6120 section 8.3."""

from __future__ import annotations

import re

from lxml import etree

from protocols.xmpp.stream import NS_CLIENT

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
CLIENT_NSMAP = {None: NS_CLIENT}

MESSAGE = f"{{{NS_CLIENT}}}message"
PRESENCE = f"{{{NS_CLIENT}}}presence"
IQ = f"{{{NS_CLIENT}}}iq"
#: a character XML 1.0 cannot carry (text from other protocols is checked before it is sent)
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: the error type RFC 6120 8.3.3 gives each condition
ERROR_TYPES = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


def element(tag: str, attrib: dict[str, str] | None = None, **attrs: str) -> etree._Element:
    """A new top-level stanza in jabber:client (``tag`` is the local name)."""
    el = etree.Element(f"{{{NS_CLIENT}}}{tag}", attrib, nsmap=CLIENT_NSMAP)
    for key, value in attrs.items():
        el.set(key.rstrip("_"), value)
    return el


def serialize(el: etree._Element, strip: tuple[bytes, ...] = ()) -> bytes:
    """The stanza's bytes; ``strip`` drops the stream header's own namespace declarations
    that lxml repeats on a stanza still attached to the stream root.  The tail (character
    data the peer sent after the stanza) is not the stanza's and stays behind."""
    data = etree.tostring(el, encoding="utf-8", with_tail=False)
    for declaration in strip:
        data = data.replace(declaration, b"", 1)
    return data


def local_name(el: etree._Element) -> str:
    return etree.QName(el).localname


def iq_result(iq: etree._Element, child: etree._Element | None = None) -> etree._Element:
    """The result for ``iq`` (addresses swapped), carrying ``child`` if given."""
    reply = element("iq", type="result", id=iq.get("id", ""))
    _address_reply(iq, reply)
    if child is not None:
        reply.append(child)
    return reply


def error_reply(
    stanza: etree._Element, condition: str, text: str = "", error_type: str | None = None
) -> etree._Element:
    """The error stanza answering ``stanza`` (RFC 6120 8.3): same kind and id, addresses
    swapped, the original payload echoed for messages and presences."""
    reply = element(local_name(stanza), type="error")
    if (stanza_id := stanza.get("id")) is not None:
        reply.set("id", stanza_id)
    _address_reply(stanza, reply)
    if local_name(stanza) != "iq":
        for child in stanza:
            reply.append(_copy(child))
    error = etree.SubElement(reply, f"{{{NS_CLIENT}}}error")
    error.set("type", error_type or ERROR_TYPES.get(condition, "cancel"))
    etree.SubElement(error, f"{{{NS_STANZAS}}}{condition}", nsmap={None: NS_STANZAS})
    if text:
        text_el = etree.SubElement(error, f"{{{NS_STANZAS}}}text", nsmap={None: NS_STANZAS})
        text_el.text = text
    return reply


def _address_reply(stanza: etree._Element, reply: etree._Element) -> None:
    if (sender := stanza.get("from")) is not None:
        reply.set("to", sender)
    if (recipient := stanza.get("to")) is not None:
        reply.set("from", recipient)


def _copy(el: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(el, with_tail=False))


def stream_error(condition: str, text: str = "") -> bytes:
    """A ``<stream:error>`` element (the caller then closes the stream)."""
    body = f"<{condition} xmlns='{NS_STREAMS}'/>"
    if text:
        body += f"<text xmlns='{NS_STREAMS}'>{_escape(text)}</text>"
    return f"<stream:error>{body}</stream:error>".encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""Incremental parsing of one XMPP stream, sans-I/O.

The stream is one XML document: ``<stream:stream>`` opens it, each child of the root is a
stanza (or a negotiation element), ``</stream:stream>`` closes it.  lxml's pull parser
takes whole reads and yields finished stanzas.  RFC 6120 section 11 restricts the XML a
stream may carry: no DTD (so no entity declarations: undeclared entities are errors and
nothing is ever expanded), no comments, no processing instructions.  A stanza larger than
``max_stanza_size`` bytes or nested deeper than ``max_depth`` ends the stream with
``policy-violation``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
STREAM_TAG = f"{{{NS_STREAM}}}stream"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class StreamError(Exception):
    """A stream-level error (RFC 6120 4.9.3): ``condition`` names the element to send."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's stream header; ``attributes`` unqualified names to values."""

    attributes: dict[str, str]


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer closed its stream (``</stream:stream>``)."""


Event = StreamOpened | StreamClosed | etree._Element


class StreamParser:
    """Feed bytes, get events: a ``StreamOpened``, stanzas (lxml elements, still attached
    to the stream root so they serialize with the stream's default namespace: handle
    them before the next ``feed``), a ``StreamClosed``."""

    def __init__(self, max_stanza_size: int = 262_144, max_depth: int = 100) -> None:
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.reset()

    def reset(self) -> None:
        """Start over for a new stream (after STARTTLS and after SASL success)."""
        self._parser = etree.XMLPullParser(
            events=("start", "end", "comment", "pi"),
            resolve_entities=True,  # no DTD allowed, so only the five predefined ones
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_blank_text=False,
        )
        self._root: etree._Element | None = None
        self._depth = 0
        self._partial = 0  # bytes fed since the last time no stanza was open
        self._finished: list[etree._Element] = []
        self.closed = False
        #: namespace declarations of the stream header, stripped from serialized stanzas
        self.header_declarations: tuple[bytes, ...] = ()

    def feed(self, data: bytes) -> list[Event]:
        if self.closed:
            raise StreamError("not-well-formed", "data after the end of the stream")
        root = self._root
        if root is not None:
            for done in self._finished:  # handled by now (see the class docstring)
                root.remove(done)
            self._finished.clear()
            root.text = None
        try:
            self._parser.feed(data)
            events = self._events()
        except etree.XMLSyntaxError as exc:
            raise StreamError("not-well-formed", str(exc)) from None
        if self._depth != 1:
            self._partial += len(data)
            if self._partial > self.max_stanza_size:
                raise StreamError("policy-violation", "stanza too large")
        else:
            self._partial = 0
        return events

    def _events(self) -> list[Event]:
        out: list[Event] = []
        for kind, element in self._parser.read_events():
            if kind == "start":
                self._depth += 1
                if self._depth > self.max_depth:
                    raise StreamError("policy-violation", "XML nested too deeply")
                if self._depth == 1:
                    out.append(self._opened(element))
            elif kind == "end":
                self._depth -= 1
                if self._depth == 1:
                    self._finished.append(element)
                    out.append(element)
                    self._partial = 0
                elif self._depth == 0:
                    self.closed = True
                    out.append(StreamClosed())
            else:
                raise StreamError("restricted-xml", f"no {kind} allowed in a stream")
        return out

    def _opened(self, root: etree._Element) -> StreamOpened:
        if root.getroottree().docinfo.doctype:
            raise StreamError("restricted-xml", "no DTD allowed in a stream")
        if root.tag != STREAM_TAG:
            raise StreamError("invalid-namespace", "the root must be stream:stream")
        if root.nsmap.get(None) != NS_CLIENT:
            raise StreamError("invalid-namespace", "the content namespace must be jabber:client")
        self._root = root
        self.header_declarations = tuple(
            f' xmlns:{prefix}="{uri}"'.encode() for prefix, uri in root.nsmap.items() if prefix
        )
        return StreamOpened({_attribute_name(k): v for k, v in root.attrib.items()})


def _attribute_name(qualified: str) -> str:
    return "xml:lang" if qualified == XML_LANG else qualified

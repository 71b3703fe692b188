"""Incremental parsing of one XMPP stream, sans-I/O.

The stream is one XML document: ``<stream:stream>`` opens it, each child of the root is a
stanza (or a negotiation element), ``</stream:stream>`` closes it.  lxml's pull parser
takes whole reads and yields finished stanzas.  RFC 6120 section 11 restricts the XML a
stream may carry: no DTD, no comments, no processing instructions, UTF-8 only.

A DTD is refused before lxml sees a byte of it: libxml2 would otherwise read its external
entities (``file:///dev/zero`` hangs the broker) and expand its internal ones while parsing
the same read.  The input is decoded as UTF-8 whatever it declares, so an encoding such as
UTF-7 cannot hide ``<!DOCTYPE`` from that check.  Without a DTD only the five predefined
entities exist; any other entity reference is not well-formed.

A stanza larger than ``max_stanza_size`` bytes or nested deeper than ``max_depth`` ends the
stream with ``policy-violation``.  lxml reports no byte offsets, so reads are fed in pieces
of ``max_stanza_size // 16`` bytes and a stanza is measured in whole pieces: one of up to
``max_stanza_size`` bytes always passes, one over ``max_stanza_size * 9 // 8`` never does.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from lxml import etree

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
STREAM_TAG = f"{{{NS_STREAM}}}stream"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
#: the smallest piece a read is cut into (tiny size limits would otherwise mean tiny feeds)
MIN_PIECE = 64


#: lxml parsers end in reference cycles (parser, parser context, document) that only the
#: cyclic collector frees, and the broker runs that rarely (runtime.tune_gc): once this many
#: parsers have been dropped, collect, so finished and idle streams give their memory back.
COLLECT_EVERY = 500
_retired = 0


def _retire() -> None:
    global _retired
    _retired += 1
    if _retired >= COLLECT_EVERY:
        _retired = 0
        gc.collect()


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
        self._piece = max(MIN_PIECE, max_stanza_size // 16)
        self.reset()

    def reset(self) -> None:
        """Start over for a new stream (after STARTTLS and after SASL success)."""
        if getattr(self, "_parser", None) is not None:
            _retire()
        self._parser: etree.XMLPullParser | None = self._new_parser()
        self._root: etree._Element | None = None
        self._prolog: bytes | None = b""  # the bytes before the root's start tag
        self._depth = 0
        self._partial = 0  # bytes counted against the open stanza (or the prolog)
        self._stanza_ended = False  # a stanza ended in the piece being fed
        self._finished: list[etree._Element] = []
        self.closed = False
        #: namespace declarations of the stream header, stripped from serialized stanzas
        self.header_declarations: tuple[bytes, ...] = ()
        #: the stream header as a new parser is given it after ``release``
        self._header = b""

    def release(self) -> None:
        """Drop the parser between stanzas (an idle stream's largest part, some 10 KiB of
        libxml2 state); the next ``feed`` starts a new one on a copy of the header."""
        if self._parser is None or self._depth != 1 or self._partial or self.closed:
            return
        self._forget_finished()
        self._parser = self._root = None
        _retire()

    @property
    def between_stanzas(self) -> bool:
        """No stanza is partly read: everything fed so far ended on a stanza's end."""
        return self._depth <= 1

    def close(self) -> None:
        """The stream is over: the parser goes."""
        if self._parser is not None:
            self._parser = self._root = None
            self._finished.clear()
            _retire()

    def _resume(self) -> None:
        parser = self._new_parser()
        parser.feed(self._header)
        for _, root in parser.read_events():
            self._root = root
        self._parser = parser

    @staticmethod
    def _new_parser() -> etree.XMLPullParser:
        return etree.XMLPullParser(
            events=("start", "end", "comment", "pi"),
            encoding="utf-8",  # whatever the XML declaration says (RFC 6120 11.6)
            resolve_entities=True,  # the DTD check leaves only the five predefined ones
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_blank_text=False,
        )

    def feed(self, data: bytes) -> list[Event]:
        if self.closed:
            if data.strip():
                raise StreamError("not-well-formed", "data after the end of the stream")
            return []
        if self._parser is None:
            self._resume()
        self._forget_finished()
        if self._prolog is not None:
            self._check_prolog(data)
        events: list[Event] = []
        for start in range(0, len(data), self._piece):
            events += self._feed_piece(data[start : start + self._piece])
        return events

    def _forget_finished(self) -> None:
        """Detach the stanzas of the last feed (handled by now, see the class docstring)
        and the character data between stanzas, so the root never grows."""
        root = self._root
        if root is None:
            return
        finished = self._finished
        count = len(finished)
        if count and len(root) >= count and root[count - 1] is finished[-1]:
            del root[:count]  # they lead the root's children (a partial stanza may follow)
        else:
            for done in finished:
                if done.getparent() is root:  # a handler may have moved it elsewhere
                    root.remove(done)
        self._finished.clear()
        root.text = None

    def _check_prolog(self, data: bytes) -> None:
        """Refuse ``<!`` (DOCTYPE, comment) before the root element starts."""
        assert self._prolog is not None
        prolog = self._prolog + data
        at = prolog.find(b"<")
        while at != -1:
            mark = prolog[at + 1 : at + 2]
            if mark == b"!":
                raise StreamError("restricted-xml", "no DTD or comment allowed in a stream")
            if mark != b"?":  # the root's start tag ends the prolog, or the next read may
                self._prolog = None if mark else b"<"
                return
            end = prolog.find(b"?>", at + 2)  # a '<' inside a PI starts no markup
            if end == -1:
                self._prolog = prolog[at:]  # the declaration or PI goes on in the next read
                return
            at = prolog.find(b"<", end + 2)
        self._prolog = b""

    def _feed_piece(self, piece: bytes) -> list[Event]:
        self._stanza_ended = False
        assert self._parser is not None
        try:
            self._parser.feed(piece)
        except etree.XMLSyntaxError as exc:
            self._events()  # our limits first: libxml2 has its own at depth 256
            raise StreamError("not-well-formed", str(exc)) from None
        events = self._events()
        if self._depth == 1:
            self._partial = 0
        else:
            self._partial = len(piece) if self._stanza_ended else self._partial + len(piece)
            if self._partial > self.max_stanza_size + self._piece:
                raise StreamError("policy-violation", "stanza too large")
        return events

    def _events(self) -> list[Event]:
        out: list[Event] = []
        assert self._parser is not None
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
                    self._stanza_ended = True
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
        self._stanza_ended = True  # the header's piece does not count against a stanza
        self.header_declarations = tuple(
            f' xmlns:{prefix}="{uri}"'.encode() for prefix, uri in root.nsmap.items() if prefix
        )
        tag = f"{root.prefix}:stream" if root.prefix else "stream"
        declarations = "".join(
            f" xmlns:{prefix}={quoteattr(uri)}" if prefix else f" xmlns={quoteattr(uri)}"
            for prefix, uri in root.nsmap.items()
        )
        self._header = f"<{tag}{declarations}>".encode()
        return StreamOpened({_attribute_name(k): v for k, v in root.attrib.items()})


def _attribute_name(qualified: str) -> str:
    return "xml:lang" if qualified == XML_LANG else qualified

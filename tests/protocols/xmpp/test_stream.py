"""The incremental stream parser against whatever a peer may send."""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from protocols.xmpp.stanza import serialize
from protocols.xmpp.stream import Event, StreamClosed, StreamError, StreamOpened, StreamParser

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)
STANZAS = (
    b"<message to='bob@localhost' type='chat' id='m1'><body>hi &amp; &lt;bye&gt; &#x263A;"
    b"<![CDATA[<raw>]]></body></message>"
    b"<iq type='get' id='i1'><query xmlns='jabber:iq:roster'/></iq>"
    b"  <presence><x xmlns='urn:x' a='1'><y>\xc3\xa9t\xc3\xa9</y></x></presence>\n"
)
TRAILER = b"</stream:stream>"
BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY lol 'lol'>"
    b"<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
    b"<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>"
)
XXE = b"<!DOCTYPE stream:stream [<!ENTITY x SYSTEM 'file:///dev/zero'>]>"


def summary(parser: StreamParser, events: list[Event]) -> list[object]:
    """Events as comparable values (stanzas serialized as the front end does)."""
    return [
        serialize(e, parser.header_declarations) if isinstance(e, etree._Element) else e
        for e in events
    ]


def parse(data: bytes, cuts: list[int] = (), **limits: int) -> list[object]:
    parser = StreamParser(**limits)
    out: list[object] = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        out += summary(parser, parser.feed(data[start:end]))
    return out


def error_of(data: bytes, *, chunk: int | None = None, **limits: int) -> StreamError:
    parser = StreamParser(**limits)
    step = chunk or len(data) or 1
    with pytest.raises(StreamError) as caught:
        for start in range(0, len(data), step):
            parser.feed(data[start : start + step])
    return caught.value


def test_a_whole_stream_parses_into_header_stanzas_and_close() -> None:
    events = parse(HEADER + STANZAS + TRAILER)
    assert events[0] == StreamOpened({"to": "localhost", "version": "1.0"})
    assert events[1] == (
        b'<message xmlns="jabber:client" to="bob@localhost" type="chat" id="m1">'
        b"<body>hi &amp; &lt;bye&gt; \xe2\x98\xba&lt;raw&gt;</body></message>"
    )
    assert [e[:4] for e in events[1:4]] == [b"<mes", b"<iq ", b"<pre"]
    assert b"\xc3\xa9t\xc3\xa9" in events[3]
    assert events[-1] == StreamClosed()


def test_a_stanza_serializes_without_the_text_after_it() -> None:
    events = parse(HEADER + b"<presence/>trailing text")
    assert events[1] == b'<presence xmlns="jabber:client"/>'


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(HEADER + STANZAS + TRAILER)), max_size=8))
def test_split_reads_parse_the_same_as_one(cuts: list[int]) -> None:
    data = HEADER + STANZAS + TRAILER
    assert parse(data, cuts) == parse(data)


def test_every_single_split_point_parses_the_same() -> None:
    data = HEADER + STANZAS + TRAILER
    whole = parse(data)
    for cut in range(len(data) + 1):
        assert parse(data, [cut]) == whole, cut


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_stream_errors(head: bytes, tail: bytes) -> None:
    for data in (head + tail, HEADER + head + tail):
        parser = StreamParser(max_stanza_size=1024, max_depth=8)
        try:
            parser.feed(data[: len(data) // 2])
            parser.feed(data[len(data) // 2 :])
        except StreamError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_inside_a_stanza_raises_nothing_but_stream_errors(text: str) -> None:
    parser = StreamParser()
    with contextlib.suppress(StreamError):
        parser.feed(HEADER + b"<message><body>" + text.encode() + b"</body></message>")


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize(
    "prolog",
    [BILLION_LAUGHS, XXE, b"<!DOCTYPE stream:stream>", b"<!-- hello -->"],
    ids=["billion-laughs", "external-entity", "doctype", "comment"],
)
def test_a_dtd_or_comment_before_the_root_is_restricted_xml(prolog: bytes, chunk: int) -> None:
    data = prolog + HEADER.removeprefix(b"<?xml version='1.0'?>") + b"<message>&lol3;&x;</message>"
    assert error_of(data, chunk=chunk).condition == "restricted-xml"


def test_a_dtd_declared_in_utf7_is_still_refused() -> None:
    """An encoding that spells '<' differently cannot smuggle a DTD past the check."""
    data = b"<?xml version='1.0' encoding='UTF-7'?>+ADw-!DOCTYPE x+AD4-" + HEADER[21:]
    assert error_of(data).condition == "not-well-formed"


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_a_dtd_after_a_processing_instruction_is_refused_unparsed(chunk: int | None) -> None:
    """A '<' inside a PI does not end the prolog: the DTD after it is still seen."""
    data = b"<?pi <x ?>" + XXE + HEADER[21:] + b"<message>&x;</message>"
    assert error_of(data, chunk=chunk).condition == "restricted-xml"


def test_a_dtd_is_refused_before_any_of_it_is_parsed() -> None:
    """The first read of a huge DTD already ends the stream: nothing waits for the rest."""
    assert error_of(b"<!DOCTYPE x [" + b" " * 100).condition == "restricted-xml"


def test_undeclared_entities_are_not_well_formed() -> None:
    assert error_of(HEADER + b"<message>&lol;</message>").condition == "not-well-formed"


@pytest.mark.parametrize(
    "inside",
    [b"<message><!-- c --></message>", b"<message><?pi x?></message>", b"<?pi x?>"],
    ids=["comment", "pi-in-stanza", "pi-between-stanzas"],
)
def test_comments_and_processing_instructions_are_restricted_xml(inside: bytes) -> None:
    assert error_of(HEADER + inside).condition == "restricted-xml"


def test_a_processing_instruction_before_the_root_is_restricted_xml() -> None:
    assert error_of(b"<?pi x?>" + HEADER[21:]).condition == "restricted-xml"


@pytest.mark.parametrize("chunk", [None, 100, 4096])
def test_a_stanza_over_the_size_limit_is_a_policy_violation(chunk: int | None) -> None:
    data = HEADER + b"<message><body>" + b"x" * 1400 + b"</body></message>"
    error = error_of(data, chunk=chunk, max_stanza_size=1024)
    assert error.condition == "policy-violation"


def test_one_huge_text_node_is_a_policy_violation_before_it_ends() -> None:
    parser = StreamParser(max_stanza_size=4096)
    parser.feed(HEADER + b"<message><body>")
    with pytest.raises(StreamError) as caught:
        for _ in range(100):
            parser.feed(b"x" * 1000)
    assert caught.value.condition == "policy-violation"


def test_a_huge_prolog_is_a_policy_violation() -> None:
    error = error_of(b"<?xml version='1.0'?>" + b" " * 10_000, chunk=1000, max_stanza_size=4096)
    assert error.condition == "policy-violation"


def test_stanzas_up_to_the_limit_pass_back_to_back() -> None:
    """Many stanzas just under the limit, in reads that cut them anywhere, all pass."""
    stanza = b"<message><body>" + b"y" * (4096 - 32) + b"</body></message>"
    assert len(stanza) <= 4096
    data = HEADER + stanza * 40
    for chunk in (1000, 4097, 65536):
        parser = StreamParser(max_stanza_size=4096)
        count = 0
        for start in range(0, len(data), chunk):
            count += sum(
                isinstance(e, etree._Element) for e in parser.feed(data[start : start + chunk])
            )
        assert count == 40


@pytest.mark.parametrize("depth", [20, 300, 5000])
def test_nesting_over_the_depth_limit_is_a_policy_violation(depth: int) -> None:
    data = HEADER + b"<message>" + b"<a>" * depth
    assert error_of(data, max_depth=10).condition == "policy-violation"


def test_nesting_up_to_the_depth_limit_passes() -> None:
    nested = b"<a>" * 8 + b"</a>" * 8  # root 1 + message 2 + 8 = 10
    events = parse(HEADER + b"<message>" + nested + b"</message>", max_depth=10)
    assert len(events) == 2


@pytest.mark.parametrize(
    "header",
    [
        HEADER.replace(b"jabber:client", b"jabber:server"),
        HEADER.replace(b"http://etherx.jabber.org/streams", b"urn:wrong"),
        b"<stream xmlns='jabber:client' version='1.0'>",
        b"<html>",
    ],
    ids=["content-namespace", "stream-namespace", "unprefixed", "not-a-stream"],
)
def test_a_wrong_stream_namespace_is_invalid_namespace(header: bytes) -> None:
    assert error_of(header).condition == "invalid-namespace"


@pytest.mark.parametrize(
    "data",
    [HEADER + b"<message>", HEADER + b"<a></b>", b"garbage", HEADER + b"<m a='1' a='2'/>"],
    ids=["unclosed-then-more", "mismatched", "garbage", "duplicate-attribute"],
)
def test_malformed_xml_is_not_well_formed(data: bytes) -> None:
    parser = StreamParser()
    with pytest.raises(StreamError) as caught:
        parser.feed(data)
        parser.feed(b"</stream:stream>")
    assert caught.value.condition == "not-well-formed"


def test_data_after_the_end_of_the_stream_is_not_well_formed() -> None:
    parser = StreamParser()
    parser.feed(HEADER + TRAILER)
    with pytest.raises(StreamError) as caught:
        parser.feed(b"<message/>")
    assert caught.value.condition == "not-well-formed"


def test_reset_starts_a_new_stream() -> None:
    parser = StreamParser()
    parser.feed(HEADER + b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>x</auth>")
    parser.reset()
    events = parser.feed(HEADER + b"<iq type='set' id='b'/>")
    assert isinstance(events[0], StreamOpened)
    assert serialize(events[1], parser.header_declarations) == (
        b"<iq xmlns=\"jabber:client\" type='set' id='b'/>".replace(b"'", b'"')
    )


def test_a_released_parser_goes_on_where_it_stopped() -> None:
    """release() between stanzas (what an idle stream does) changes nothing a peer sees;
    in the middle of a stanza it does nothing."""
    half = b"<message><body>half</body></message>"
    whole = StreamParser()
    expected = summary(whole, whole.feed(HEADER + STANZAS + half + STANZAS + TRAILER))
    parser = StreamParser()
    out = summary(parser, parser.feed(HEADER))
    parser.release()
    out += summary(parser, parser.feed(STANZAS + half[:18]))
    parser.release()
    out += summary(parser, parser.feed(half[18:]))
    parser.release()
    out += summary(parser, parser.feed(STANZAS + TRAILER))
    assert out == expected


def test_finished_stanzas_are_detached_so_the_root_does_not_grow() -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    stanza = b"<message to='a@b'><body>" + b"z" * 500 + b"</body></message> "
    parser.feed(stanza * 10)
    tracemalloc.start()
    try:
        for _ in range(200):
            parser.feed(stanza * 10)
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            parser.feed(stanza * 10)
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert parser._root is not None and len(parser._root) <= 10
    assert grown < 100_000


def test_whitespace_keepalives_never_count_against_the_size_limit() -> None:
    parser = StreamParser(max_stanza_size=1024)
    parser.feed(HEADER)
    for _ in range(1000):
        assert parser.feed(b" " * 100) == []
    assert parser._root is not None and not parser._root.text

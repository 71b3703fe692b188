"""The payload mapping of SPEC item 4: bodies to item payloads and back, exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from protocols.xmpp.pubsub.payload import (
    DATA,
    NOT_XML,
    NS_PAYLOAD,
    XML_TYPE,
    PayloadError,
    element_bytes,
    to_body,
    to_bytes,
    to_element,
)

content_types = st.one_of(
    st.none(), st.sampled_from(["text/plain", "application/json", "image/png"])
)


def _over_the_wire(el: etree._Element) -> etree._Element:
    """The element as a client receives it: serialized, then parsed."""
    return etree.fromstring(etree.tostring(el))


@given(body=st.binary(max_size=300), content_type=content_types)
def test_any_body_round_trips(body: bytes, content_type: str | None) -> None:
    el = _over_the_wire(to_element(body, content_type))
    assert el.tag == DATA
    assert to_body(el) == (body, content_type)


@given(text=st.text(max_size=200), content_type=content_types)
def test_text_that_xml_carries_travels_as_utf8(text: str, content_type: str | None) -> None:
    el = to_element(text.encode(), content_type)
    carried = all(
        c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000"
        for c in text
    )
    assert el.get("encoding") == ("utf-8" if carried else "base64")
    assert to_body(_over_the_wire(el)) == (text.encode(), content_type)


def test_the_wrapper_as_the_spec_writes_it() -> None:
    el = to_element(b"21.5", "text/plain")
    assert etree.tostring(el) == (
        b'<data xmlns="urn:broker:payload:0" content-type="text/plain" encoding="utf-8">21.5</data>'
    )
    assert to_element(b"\xff\x00", None).attrib == {"encoding": "base64"}
    assert to_element(b"\xff\x00", None).text == "/wA="


def test_xml_bodies_are_the_element_itself() -> None:
    el = to_element(b"<temp xmlns='urn:example'>21</temp>", XML_TYPE)
    assert (el.tag, el.text) == ("{urn:example}temp", "21")
    body, content_type = to_body(el)
    assert content_type == XML_TYPE and etree.fromstring(body).text == "21"


@pytest.mark.parametrize(
    "body", [b"not xml", b"<a>", b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>", b"<?pi x?>"]
)
def test_an_xml_content_type_that_is_no_element_is_wrapped(body: bytes) -> None:
    el = to_element(body, XML_TYPE)
    assert el.tag == DATA and to_body(_over_the_wire(el)) == (body, XML_TYPE)


def test_payload_elements_leave_the_stream_namespaces_behind() -> None:
    stream = etree.fromstring(
        b"<stream xmlns='jabber:client' xmlns:s='urn:s'><iq><p xmlns='urn:p'><q/></p></iq></stream>"
    )
    payload = stream[0][0]
    assert element_bytes(payload) == b'<p xmlns="urn:p"><q/></p>'


@pytest.mark.parametrize(
    "wrapper",
    [
        f"<data xmlns='{NS_PAYLOAD}' encoding='base64'>not base64!</data>",
        f"<data xmlns='{NS_PAYLOAD}' encoding='rot13'>abc</data>",
    ],
)
def test_malformed_wrappers_are_refused(wrapper: str) -> None:
    with pytest.raises(PayloadError):
        to_body(etree.fromstring(wrapper))


@given(
    tag=st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
    text=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
        max_size=50,
    ).filter(
        lambda t: (
            all(c in "\t\n" or c >= " " for c in t) and "\ufffe" not in t and "\uffff" not in t
        )
    ),
)
def test_payload_elements_round_trip(tag: str, text: str) -> None:
    el = etree.Element(f"{{urn:example}}{tag}")
    el.text = text or None
    body, content_type = to_body(el)
    assert etree.tostring(to_element(body, content_type)) == etree.tostring(el)


@given(
    body=st.one_of(st.binary(max_size=100), st.text(max_size=100).map(str.encode)),
    content_type=st.one_of(content_types, st.text(max_size=20)),
)
def test_the_fast_serialization_is_the_elements(body: bytes, content_type: str | None) -> None:
    if content_type is not None and NOT_XML.search(content_type):
        return  # no content type XML cannot carry reaches here (it comes from a frame)
    assert to_bytes(body, content_type) == element_bytes(to_element(body, content_type))


def test_a_replacement_character_is_text_and_invalid_utf8_is_not() -> None:
    assert to_element("a\ufffdb".encode(), None).get("encoding") == "utf-8"
    assert to_element("a\ufffd".encode() + b"\xff", None).get("encoding") == "base64"

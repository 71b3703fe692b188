"""Message archive queries (XEP-0313, urn:xmpp:mam:2) over a user's own ``Archive``.

``<iq type='set'><query xmlns='urn:xmpp:mam:2' queryid='q'>`` with an optional data form
(fields ``with``, ``start``, ``end``) and an optional RSM ``<set/>`` (``max``, ``after``,
``before``; an empty ``<before/>`` asks for the last page).  The answer is one
``<message><result queryid='q' id='…'><forwarded><delay/>original</forwarded></result>``
per archived message, oldest first, then the iq result with ``<fin complete='…'>`` and the
RSM ``<set/>`` (first, last, count).  ``type='get'`` returns the form's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from lxml import etree

from protocols.xmpp import rsm
from protocols.xmpp.archive import FEATURES, NS_MAM, Archive, Record
from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.offline import NS_DELAY, stamp_time
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import error_reply, iq_result

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_DATA = "jabber:x:data"
NS_FORWARD = "urn:xmpp:forward:0"
#: results per page when the query names no max, and the most a page may hold
DEFAULT_PAGE = 50
MAX_PAGE = 250
_FIELDS = (("with", "jid-single"), ("start", "text-single"), ("end", "text-single"))


class BadQuery(ValueError):
    """A filter the server cannot apply (answered with bad-request)."""


@dataclass(frozen=True)
class Filter:
    """The data form's constraints; ``with_jid`` bare matches any resource."""

    with_jid: JID | None = None
    start: float | None = None
    end: float | None = None

    def matches(self, record: Record) -> bool:
        if self.start is not None and record.stamp < self.start:
            return False
        if self.end is not None and record.stamp > self.end:
            return False
        if self.with_jid is None:
            return True
        if self.with_jid.resource:
            return record.with_jid == str(self.with_jid)
        return record.with_bare == str(self.with_jid)


def parse_filter(form: etree._Element | None) -> Filter:
    if form is None:
        return Filter()
    values: dict[str, str] = {}
    for field in form.iterfind(f"{{{NS_DATA}}}field"):
        name = field.get("var", "")
        value = field.findtext(f"{{{NS_DATA}}}value") or ""
        if name == "FORM_TYPE":
            if value != NS_MAM:
                raise BadQuery(f"unknown FORM_TYPE {value!r}")
        elif name in ("with", "start", "end"):
            values[name] = value
        else:
            raise BadQuery(f"unsupported field {name!r}")
    try:
        with_jid = parse_jid(values["with"]) if values.get("with") else None
    except InvalidJID:
        raise BadQuery("with is not a JID") from None
    return Filter(with_jid, _timestamp(values.get("start")), _timestamp(values.get("end")))


def _timestamp(text: str | None) -> float | None:
    """A XEP-0082 date-time as epoch seconds."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"bad date-time {text!r}") from None
    if moment.tzinfo is None:
        raise BadQuery(f"date-time without a time zone {text!r}")
    return moment.timestamp()


class ArchiveQueries:
    """The IQ handlers for the account's own archive."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def install(self, front: XMPPFrontEnd) -> None:
        front.account_iq[("set", f"{{{NS_MAM}}}query")] = self.query
        front.account_iq[("get", f"{{{NS_MAM}}}query")] = self.form
        front.account_features.update(FEATURES)
        front.disco_features.update(FEATURES)

    def query(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        if not _own_account(session, iq):
            session.send(error_reply(iq, "forbidden", "only your own archive"))
            return
        try:
            wanted = parse_filter(query.find(f"{{{NS_DATA}}}x"))
            request = rsm.parse_request(query.find(f"{{{rsm.NS_RSM}}}set"), DEFAULT_PAGE, MAX_PAGE)
        except BadQuery as exc:
            session.send(error_reply(iq, "bad-request", str(exc)))
            return
        except rsm.BadPage as exc:
            session.send(error_reply(iq, exc.condition, str(exc)))
            return
        found = [r for r in self.archive.records(session.bare.local) if wanted.matches(r)]
        try:
            page = rsm.select(found, [r.id for r in found], request)
        except rsm.BadPage as exc:
            session.send(error_reply(iq, exc.condition, str(exc)))
            return
        send_page(session, iq, str(session.bare), query.get("queryid"), page)

    def form(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        """The query form's fields (XEP-0313 section 5.1)."""
        reply = etree.Element(f"{{{NS_MAM}}}query", nsmap={None: NS_MAM})
        form = etree.SubElement(reply, f"{{{NS_DATA}}}x", nsmap={None: NS_DATA})
        form.set("type", "form")
        form_type = etree.SubElement(form, f"{{{NS_DATA}}}field", var="FORM_TYPE", type="hidden")
        etree.SubElement(form_type, f"{{{NS_DATA}}}value").text = NS_MAM
        for name, kind in _FIELDS:
            etree.SubElement(form, f"{{{NS_DATA}}}field", var=name, type=kind)
        session.send(iq_result(iq, reply))


def _own_account(session: Session, iq: etree._Element) -> bool:
    to = iq.get("to")
    try:
        return to is None or parse_jid(to) == session.bare
    except InvalidJID:
        return False


def send_page(
    session: Session, iq: etree._Element, archive: str, queryid: str | None, page: rsm.Page
) -> None:
    """A page of query results from the archive at JID ``archive`` (an account's or a
    room's), one message per record, then the ``fin`` that answers the query."""
    query = "" if queryid is None else f" queryid={quoteattr(queryid)}"
    head = (
        f"<message xmlns='jabber:client' to={quoteattr(session.jid_text)} "
        f"from={quoteattr(archive)}><result xmlns='{NS_MAM}'{query} id="
    ).encode()
    for record in page.items:
        session.send(_result_message(head, record))
    fin = etree.Element(f"{{{NS_MAM}}}fin", nsmap={None: NS_MAM})
    if page.complete:
        fin.set("complete", "true")
    first, last = (page.items[0].id, page.items[-1].id) if page.items else (None, None)
    fin.append(rsm.result_set(page, first, last))
    session.send(iq_result(iq, fin))


def _result_message(head: bytes, record: Record) -> bytes:
    """One archived stanza as a query result: ``head`` (the message up to the result's
    id attribute, as MAM queries of accounts and rooms write it) and the forwarded record."""
    return b"".join(
        (
            head,
            quoteattr(record.id).encode(),
            f"><forwarded xmlns='{NS_FORWARD}'><delay xmlns='{NS_DELAY}' "
            f"stamp='{stamp_time(record.stamp)}'/>".encode(),
            record.stanza,
            b"</forwarded></result></message>",
        )
    )

"""The XMPP side of HTTP file upload (XEP-0363): the component at ``upload.<domain>``
answers disco (identity store/file, the feature, the max-file-size form of XEP-0128)
and slot requests, with the XEP's errors for files too large and quotas reached."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lxml import etree

from broker.alarms import DISK
from protocols.xmpp import forms
from protocols.xmpp.disco import NS_INFO, NS_ITEMS, info
from protocols.xmpp.jid import JID
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import IQ, MESSAGE, error_reply, iq_result
from protocols.xmpp.upload.slots import FileTooLarge, QuotaReached, SlotRefused

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd
    from protocols.xmpp.upload.service import UploadService

NS_UPLOAD = "urn:xmpp:http:upload:0"
REQUEST = f"{{{NS_UPLOAD}}}request"
IDENTITY = ("store", "file", "HTTP File Upload")
FEATURES = {NS_INFO, NS_ITEMS, NS_UPLOAD}


class UploadComponent:
    def __init__(self, front: XMPPFrontEnd, service: UploadService) -> None:
        self.front = front
        self.service = service

    def stanza(self, session: Session, el: etree._Element, to: JID) -> None:
        kind = el.get("type")
        if el.tag != IQ:
            if el.tag == MESSAGE and kind != "error":
                session.send(error_reply(el, "service-unavailable"))
            return  # presence to the service means nothing
        if kind in ("result", "error"):
            return
        if kind not in ("get", "set") or el.get("id") is None or len(el) != 1:
            session.send(error_reply(el, "bad-request", "an iq carries an id, a type, a payload"))
            return
        payload = el[0]
        if to.local or to.resource:
            session.send(error_reply(el, "service-unavailable"))
        elif kind == "get" and payload.tag == f"{{{NS_INFO}}}query":
            self._info(session, el, payload)
        elif kind == "get" and payload.tag == f"{{{NS_ITEMS}}}query":
            query = etree.Element(f"{{{NS_ITEMS}}}query", nsmap={None: NS_ITEMS})
            session.send(iq_result(el, query))
        elif kind == "get" and payload.tag == REQUEST:
            self._slot(session, el, payload)
        else:
            session.send(error_reply(el, "service-unavailable"))

    def unavailable(self, session: Session) -> None:
        """Open slots stay valid: a client may upload over a new stream."""

    def _info(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        if query.get("node") is not None:
            session.send(error_reply(iq, "item-not-found"))
            return
        result = info(IDENTITY, FEATURES, None)
        size = forms.Field("max-file-size", values=[str(self.service.limits.max_file_size)])
        result.append(forms.build("result", [size], form_type=NS_UPLOAD))
        session.send(iq_result(iq, result))

    def _slot(self, session: Session, iq: etree._Element, request: etree._Element) -> None:
        if DISK in self.front.broker.alarms.active:
            session.send(error_reply(iq, "resource-constraint", "the server's disk is full"))
            return
        uploads = self.service.uploads
        try:
            slot = uploads.request(
                session.bare.local,
                request.get("filename"),
                request.get("size"),
                request.get("content-type"),
                self.service.now(),
            )
        except SlotRefused as refused:
            session.send(_refusal(iq, refused))
            return
        url = self.service.url(slot)
        result = etree.Element(f"{{{NS_UPLOAD}}}slot", nsmap={None: NS_UPLOAD})
        put = etree.SubElement(result, f"{{{NS_UPLOAD}}}put", url=url)
        header = etree.SubElement(put, f"{{{NS_UPLOAD}}}header", name="Authorization")
        header.text = f"Bearer {slot.secret}"
        etree.SubElement(result, f"{{{NS_UPLOAD}}}get", url=url)
        session.send(iq_result(iq, result))


def _refusal(iq: etree._Element, refused: SlotRefused) -> etree._Element:
    """The stanza error of XEP-0363 section 4 for a refused slot request."""
    reply = error_reply(iq, refused.condition, str(refused))
    error = reply[-1]
    if isinstance(refused, FileTooLarge):
        too_large = etree.SubElement(
            error, f"{{{NS_UPLOAD}}}file-too-large", nsmap={None: NS_UPLOAD}
        )
        etree.SubElement(too_large, f"{{{NS_UPLOAD}}}max-file-size").text = str(
            refused.max_file_size
        )
    elif isinstance(refused, QuotaReached) and refused.retry_at is not None:
        stamp = datetime.fromtimestamp(refused.retry_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        etree.SubElement(error, f"{{{NS_UPLOAD}}}retry", nsmap={None: NS_UPLOAD}, stamp=stamp)
    return reply

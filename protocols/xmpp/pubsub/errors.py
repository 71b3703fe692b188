"""Stanza errors of publish-subscribe: a stanza condition (RFC 6120 8.3) plus, where
XEP-0060 names one, a pubsub condition in ``pubsub#errors``."""

from __future__ import annotations

from lxml import etree

from protocols.xmpp.stanza import error_reply
from protocols.xmpp.stream import NS_CLIENT

NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"


class Refusal(Exception):
    """A request the service refuses; ``reply`` makes the error stanza."""

    def __init__(self, condition: str, pubsub: str = "", text: str = "", feature: str = ""):
        super().__init__(text or pubsub or condition)
        self.condition = condition
        self.pubsub = pubsub
        self.text = text
        #: the feature an <unsupported/> error names
        self.feature = feature

    def reply(self, iq: etree._Element) -> etree._Element:
        reply = error_reply(iq, self.condition, self.text)
        if self.pubsub:
            error = reply.find(f"{{{NS_CLIENT}}}error")
            assert error is not None
            app = etree.SubElement(error, f"{{{NS_ERRORS}}}{self.pubsub}", nsmap={None: NS_ERRORS})
            if self.feature:
                app.set("feature", self.feature)
        return reply


def unsupported(feature: str) -> Refusal:
    return Refusal("feature-not-implemented", "unsupported", feature=feature)

"""Software version (XEP-0092): the server's name and version, from the package metadata,
and its operating system."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.session import Session
from protocols.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_VERSION = "jabber:iq:version"
NAME = "broker"


def install(front: XMPPFrontEnd) -> None:
    front.disco_features.add(NS_VERSION)
    front.server_iq[("get", f"{{{NS_VERSION}}}query")] = _version


def software_version() -> str:
    try:
        return metadata.version(NAME)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _version(session: Session, iq: etree._Element, query: etree._Element) -> None:
    result = etree.Element(f"{{{NS_VERSION}}}query", nsmap={None: NS_VERSION})
    etree.SubElement(result, f"{{{NS_VERSION}}}name").text = NAME
    etree.SubElement(result, f"{{{NS_VERSION}}}version").text = software_version()
    etree.SubElement(result, f"{{{NS_VERSION}}}os").text = platform.system()
    session.send(iq_result(iq, result))

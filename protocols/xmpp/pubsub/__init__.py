"""Publish-subscribe (XEP-0060) at ``pubsub.<domain>``, where every topic is a node
(``service.py``, ``bridge.py``), and personal eventing (XEP-0163) on every account
(``pep.py``); both answer the same requests (``host.py``) over the same node model
(``nodes.py``), with payloads mapped to message bodies by ``payload.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.xmpp.pubsub.bridge import NotificationBridge
from protocols.xmpp.pubsub.host import FEATURES, OWNER, PUBSUB
from protocols.xmpp.pubsub.pep import PepService
from protocols.xmpp.pubsub.service import TopicService

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd


def install(front: XMPPFrontEnd, create_nodes: bool = True) -> tuple[TopicService, PepService]:
    """The service as a component, PEP as account IQs, both in disco."""
    service = TopicService(front, create_nodes)
    service.bridge = NotificationBridge(service)
    front.components[service.jid] = service
    front.disco_items[service.jid] = "Publish-subscribe (topics)"
    pep = PepService(front)
    for kind in ("get", "set"):
        front.account_iq[(kind, PUBSUB)] = pep.iq
        front.account_iq[(kind, OWNER)] = pep.iq
    front.account_features.update(FEATURES)
    front.account_identities.append(("pubsub", "pep", ""))  # XEP-0163 section 6
    front.presence_observers.append(pep.presence)
    return service, pep

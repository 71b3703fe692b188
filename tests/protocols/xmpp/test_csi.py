"""What an inactive session holds back (XEP-0352 client state indication), sans-I/O."""

from __future__ import annotations

from protocols.xmpp.csi import MAX_HELD, ClientState

NS = "xmlns='jabber:client'"


def presence(sender: str, show: str = "") -> bytes:
    body = f"<show>{show}</show>" if show else ""
    return f"<presence {NS} from='{sender}'>{body}</presence>".encode()


def inactive() -> ClientState:
    csi = ClientState()
    csi.active = False
    return csi


def test_an_active_client_gets_everything_at_once() -> None:
    csi = ClientState()
    assert csi.outgoing(presence("bob@localhost/a")) == [presence("bob@localhost/a")]


def test_presence_is_held_and_coalesced_per_contact_keeping_the_latest() -> None:
    csi = inactive()
    assert csi.outgoing(presence("bob@localhost/a", "away")) == []
    assert csi.outgoing(presence("carol@localhost/b")) == []
    assert csi.outgoing(presence("bob@localhost/a", "dnd")) == []
    assert csi.release() == [presence("carol@localhost/b"), presence("bob@localhost/a", "dnd")]
    assert csi.release() == []


def test_subscription_requests_are_held_but_never_coalesced() -> None:
    csi = inactive()
    subscribe = f"<presence {NS} from='bob@localhost' type='subscribe'/>".encode()
    csi.outgoing(subscribe)
    csi.outgoing(presence("bob@localhost"))
    csi.outgoing(subscribe)
    assert csi.release() == [subscribe, presence("bob@localhost"), subscribe]


def test_an_urgent_stanza_sends_what_is_held_first_in_order() -> None:
    csi = inactive()
    typing = f"<message {NS} from='bob@localhost/a'><composing/></message>".encode()
    chat = f"<message {NS} from='bob@localhost/a'><body>hi</body></message>".encode()
    csi.outgoing(presence("bob@localhost/a"))
    csi.outgoing(typing)
    assert csi.outgoing(chat) == [presence("bob@localhost/a"), typing, chat]
    iq = f"<iq {NS} type='get' id='1'/>".encode()
    assert csi.outgoing(iq) == [iq]


def test_a_forwarded_message_with_a_body_is_urgent() -> None:
    csi = inactive()
    carbon = (
        f"<message {NS}><received xmlns='urn:xmpp:carbons:2'>"
        "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'>"
        "<body>hi</body></message></forwarded></received></message>"
    ).encode()
    assert csi.outgoing(carbon) == [carbon]


def test_too_much_held_goes_out_anyway() -> None:
    csi = inactive()
    for n in range(MAX_HELD):
        assert csi.outgoing(presence(f"user{n}@localhost")) == []
    released = csi.outgoing(presence("last@localhost"))
    assert len(released) == MAX_HELD + 1

"""The entity capabilities hash of XEP-0115 section 5."""

from __future__ import annotations

from protocols.xmpp.disco import caps_ver, info


def test_caps_ver_matches_the_xep_simple_example() -> None:
    features = {
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/muc",
    }
    assert caps_ver(("client", "pc", "Exodus 0.9.1"), features) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_info_lists_identity_and_sorted_features() -> None:
    query = info(("server", "im", "broker"), {"b", "a"}, "node#ver")
    assert query.get("node") == "node#ver"
    identity, *features = query
    assert (identity.get("category"), identity.get("type")) == ("server", "im")
    assert [f.get("var") for f in features] == ["a", "b"]

"""Result Set Management (XEP-0059): the page a request names, and the set describing it."""

from __future__ import annotations

import pytest
from lxml import etree

from protocols.xmpp import rsm

IDS = [f"id{n}" for n in range(5)]


def _request(xml: str) -> rsm.PageRequest:
    return rsm.parse_request(etree.fromstring(xml), default_max=3, limit=4)


def _set(children: str) -> str:
    return f"<set xmlns='{rsm.NS_RSM}'>{children}</set>"


def test_requests_are_parsed_and_max_is_capped() -> None:
    assert rsm.parse_request(None, default_max=3, limit=4) == rsm.PageRequest(3)
    assert _request(_set("<max>100</max><after>id1</after>")) == rsm.PageRequest(4, "id1")
    assert _request(_set("<max>2</max><before/>")) == rsm.PageRequest(2, before="")
    with pytest.raises(rsm.BadPage):
        _request(_set("<max>many</max>"))
    with pytest.raises(rsm.BadPage):
        _request(_set("<max>-1</max>"))


def test_forward_pages() -> None:
    first = rsm.select(IDS, IDS, rsm.PageRequest(2))
    assert (list(first.items), first.first_index, first.count, first.complete) == (
        ["id0", "id1"],
        0,
        5,
        False,
    )
    last = rsm.select(IDS, IDS, rsm.PageRequest(2, after="id2"))
    assert (list(last.items), last.first_index, last.complete) == (["id3", "id4"], 3, True)
    assert list(rsm.select(IDS, IDS, rsm.PageRequest(2, after="id4")).items) == []


def test_backward_pages() -> None:
    last = rsm.select(IDS, IDS, rsm.PageRequest(2, before=""))
    assert (list(last.items), last.first_index, last.complete) == (["id3", "id4"], 3, False)
    first = rsm.select(IDS, IDS, rsm.PageRequest(2, before="id1"))
    assert (list(first.items), first.first_index, first.complete) == (["id0"], 0, True)


def test_an_unknown_id_is_item_not_found() -> None:
    with pytest.raises(rsm.BadPage) as caught:
        rsm.select(IDS, IDS, rsm.PageRequest(2, after="gone"))
    assert caught.value.condition == "item-not-found"


def test_result_set_describes_the_page() -> None:
    page = rsm.select(IDS, IDS, rsm.PageRequest(2, after="id0"))
    xml = etree.tostring(rsm.result_set(page, "id1", "id2")).decode()
    assert xml == _set('<first index="1">id1</first><last>id2</last><count>5</count>').replace(
        "'", '"'
    )
    empty = rsm.select([], [], rsm.PageRequest(2))
    assert etree.tostring(rsm.result_set(empty, None, None)).decode() == (
        f'<set xmlns="{rsm.NS_RSM}"><count>0</count></set>'
    )

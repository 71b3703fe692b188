"""Result Set Management (XEP-0059): the page a ``<set/>`` asks for, and the ``<set/>``
that describes the page returned.

Items are identified by string ids and kept in order; ``select`` cuts the page out of the
whole (already filtered) result set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from lxml import etree

NS_RSM = "http://jabber.org/protocol/rsm"

T = TypeVar("T")


class BadPage(ValueError):
    """The request names no valid page: ``condition`` is the stanza error to answer."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition


@dataclass(frozen=True)
class PageRequest:
    """``max`` items after the id ``after``, or before ``before`` ('' = the last page)."""

    max: int
    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    #: position of the first item in the whole result set
    first_index: int
    count: int
    #: the page reaches the end of the set in the direction of paging
    complete: bool


def parse_request(el: etree._Element | None, default_max: int, limit: int) -> PageRequest:
    """The page asked for by a ``<set/>`` (or its absence); ``max`` is capped at
    ``limit``."""
    if el is None:
        return PageRequest(min(default_max, limit))
    text = el.findtext(f"{{{NS_RSM}}}max")
    try:
        wanted = default_max if text is None else int(text)
    except ValueError:
        raise BadPage("bad-request", "max is not a number") from None
    if wanted < 0:
        raise BadPage("bad-request", "max is negative")
    return PageRequest(
        min(wanted, limit), el.findtext(f"{{{NS_RSM}}}after"), el.findtext(f"{{{NS_RSM}}}before")
    )


def select(items: Sequence[T], ids: Sequence[str], request: PageRequest) -> Page[T]:
    """The page of ``items`` (whose ids are ``ids``, same order) the request names.
    Forward pages are complete when they hold the last item; pages asked for with
    ``before`` when they hold the first."""
    count = len(items)
    if request.before is not None:
        end = count if request.before == "" else _position(ids, request.before)
        start = max(0, end - request.max)
        return Page(items[start:end], start, count, start == 0)
    start = 0 if request.after is None else _position(ids, request.after) + 1
    end = min(count, start + request.max)
    return Page(items[start:end], start, count, end == count)


def _position(ids: Sequence[str], item_id: str) -> int:
    for index, candidate in enumerate(ids):
        if candidate == item_id:
            return index
    raise BadPage("item-not-found", f"no item {item_id!r} in the result set")


def result_set(page: Page[T], first_id: str | None, last_id: str | None) -> etree._Element:
    """The ``<set/>`` describing a returned page."""
    rsm = etree.Element(f"{{{NS_RSM}}}set", nsmap={None: NS_RSM})
    if first_id is not None and last_id is not None:
        first = etree.SubElement(rsm, f"{{{NS_RSM}}}first")
        first.set("index", str(page.first_index))
        first.text = first_id
        etree.SubElement(rsm, f"{{{NS_RSM}}}last").text = last_id
    etree.SubElement(rsm, f"{{{NS_RSM}}}count").text = str(page.count)
    return rsm

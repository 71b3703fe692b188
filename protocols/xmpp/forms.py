"""Data forms (XEP-0004): what room configuration (XEP-0045), node configuration and
subscription options (XEP-0060) are written in.

Forms the server sends are built from ``Field`` values; forms clients submit are read
into a mapping of field name to values, with ``FormError`` for anything malformed (the
caller answers bad-request or not-acceptable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

NS_DATA = "jabber:x:data"
X = f"{{{NS_DATA}}}x"
FIELD = f"{{{NS_DATA}}}field"
VALUE = f"{{{NS_DATA}}}value"
OPTION = f"{{{NS_DATA}}}option"

FIELD_TYPES = frozenset(
    {
        "boolean",
        "fixed",
        "hidden",
        "jid-multi",
        "jid-single",
        "list-multi",
        "list-single",
        "text-multi",
        "text-private",
        "text-single",
    }
)
#: field types whose values are a list rather than one value
MULTI = frozenset({"jid-multi", "list-multi", "text-multi"})
FORM_TYPES = frozenset({"form", "submit", "cancel", "result"})


class FormError(ValueError):
    """A form that breaks XEP-0004 or that the receiving service cannot accept."""


@dataclass
class Field:
    var: str
    type: str = "text-single"
    label: str | None = None
    values: list[str] = field(default_factory=list)
    #: (label, value) pairs of a list-single/list-multi field
    options: list[tuple[str, str]] = field(default_factory=list)


def build(
    kind: str,
    fields: list[Field],
    form_type: str | None = None,
    title: str | None = None,
    instructions: str | None = None,
) -> etree._Element:
    """An ``<x xmlns='jabber:x:data'>`` of ``kind`` (form or result) with a hidden
    FORM_TYPE first when ``form_type`` is given."""
    x = etree.Element(X, nsmap={None: NS_DATA}, type=kind)
    if title is not None:
        etree.SubElement(x, f"{{{NS_DATA}}}title").text = title
    if instructions is not None:
        etree.SubElement(x, f"{{{NS_DATA}}}instructions").text = instructions
    if form_type is not None:
        _add(x, Field("FORM_TYPE", "hidden", values=[form_type]))
    for item in fields:
        _add(x, item)
    return x


def _add(x: etree._Element, item: Field) -> None:
    el = etree.SubElement(x, FIELD, var=item.var)
    if item.type != "text-single":
        el.set("type", item.type)
    if item.label is not None:
        el.set("label", item.label)
    for value in item.values:
        etree.SubElement(el, VALUE).text = value
    for label, value in item.options:
        option = etree.SubElement(el, OPTION, label=label)
        etree.SubElement(option, VALUE).text = value


def find(parent: etree._Element) -> etree._Element | None:
    """The data form among ``parent``'s children, if any."""
    return parent.find(X)


def submitted(x: etree._Element) -> dict[str, list[str]]:
    """The values of a submitted form by field name (FORM_TYPE included); an empty dict
    for a cancelled one."""
    kind = x.get("type")
    if kind not in FORM_TYPES:
        raise FormError(f"form type {kind!r}")
    if kind == "cancel":
        return {}
    if kind != "submit":
        raise FormError("a form sent to a service is a submission")
    values: dict[str, list[str]] = {}
    for el in x.iterchildren(FIELD):
        var = el.get("var")
        if not var:
            raise FormError("a submitted field needs a var")
        if var in values:
            raise FormError(f"field {var!r} given twice")
        field_type = el.get("type")
        if field_type is not None and field_type not in FIELD_TYPES:
            raise FormError(f"field {var!r} of unknown type {field_type!r}")
        found = [value.text or "" for value in el.iterchildren(VALUE)]
        if len(found) > 1 and field_type is not None and field_type not in MULTI:
            raise FormError(f"field {var!r} takes one value")
        values[var] = found
    return values


def form_type(values: dict[str, list[str]]) -> str | None:
    found = values.get("FORM_TYPE")
    return found[0] if found else None


def boolean(values: list[str], name: str = "field") -> bool:
    """XEP-0004's boolean: 1/true or 0/false."""
    if len(values) != 1 or values[0] not in ("0", "1", "true", "false"):
        raise FormError(f"{name} must be a boolean")
    return values[0] in ("1", "true")


def single(values: list[str], name: str = "field") -> str:
    """The one value of a single-valued field ('' for an empty field)."""
    if len(values) > 1:
        raise FormError(f"{name} takes one value")
    return values[0] if values else ""


def integer(values: list[str], name: str = "field", minimum: int = 0) -> int:
    try:
        number = int(single(values, name))
    except ValueError:
        raise FormError(f"{name} must be a whole number") from None
    if number < minimum:
        raise FormError(f"{name} must be at least {minimum}")
    return number

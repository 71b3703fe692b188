"""Entity capabilities (XEP-0115) of clients: the verification string of a disco#info
answer, so the features a client announces for a ``ver`` are kept for that ``ver`` only
when they hash to it (section 5.1), and one client cannot speak for every other."""

from __future__ import annotations

import base64
import hashlib

from lxml import etree

from protocols.xmpp.disco import NS_INFO
from protocols.xmpp.forms import FIELD, VALUE, X

#: XEP-0115's hash names (IANA's) and hashlib's
HASHES = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def verification(query: etree._Element, hash_name: str) -> str | None:
    """The ``ver`` a disco#info query result hashes to; None for an unknown hash."""
    algorithm = HASHES.get(hash_name)
    if algorithm is None:
        return None
    identities = sorted(
        "/".join(
            (el.get("category", ""), el.get("type", ""), el.get(XML_LANG, ""), el.get("name", ""))
        )
        for el in query.iterchildren(f"{{{NS_INFO}}}identity")
    )
    features = sorted(el.get("var", "") for el in query.iterchildren(f"{{{NS_INFO}}}feature"))
    text = "".join(f"{s}<" for s in identities + features)
    extended = []
    for x in query.iterchildren(X):
        fields = {
            el.get("var", ""): sorted(v.text or "" for v in el.iterchildren(VALUE))
            for el in x.iterchildren(FIELD)
        }
        form_type = fields.pop("FORM_TYPE", [""])
        extended.append((form_type, fields))
    for form_type, fields in sorted(extended):
        text += "".join(f"{v}<" for v in form_type)
        for var in sorted(fields):
            text += f"{var}<" + "".join(f"{v}<" for v in fields[var])
    return base64.b64encode(hashlib.new(algorithm, text.encode()).digest()).decode()

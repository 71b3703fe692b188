"""Data forms (XEP-0004): building forms and reading submissions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from protocols.xmpp import forms
from protocols.xmpp.forms import Field, FormError


def _submission(xml: str) -> etree._Element:
    return etree.fromstring(f"<x xmlns='jabber:x:data' type='submit'>{xml}</x>")


def test_built_form_has_form_type_first_and_options():
    x = forms.build(
        "form",
        [
            Field("muc#roomconfig_persistentroom", "boolean", "Persistent", ["0"]),
            Field(
                "whois",
                "list-single",
                values=["moderators"],
                options=[("Moderators", "moderators"), ("Anyone", "anyone")],
            ),
        ],
        form_type="http://jabber.org/protocol/muc#roomconfig",
        title="Room",
    )
    assert x.get("type") == "form"
    assert x.findtext(f"{{{forms.NS_DATA}}}title") == "Room"
    fields = x.findall(forms.FIELD)
    assert [f.get("var") for f in fields] == ["FORM_TYPE", "muc#roomconfig_persistentroom", "whois"]
    assert fields[0].get("type") == "hidden"
    assert fields[2].findall(f"{forms.OPTION}/{forms.VALUE}")[1].text == "anyone"


def test_submission_read_by_var():
    values = forms.submitted(
        _submission(
            "<field var='FORM_TYPE'><value>urn:x</value></field>"
            "<field var='a' type='boolean'><value>1</value></field>"
            "<field var='m' type='jid-multi'><value>a@b</value><value>c@d</value></field>"
            "<field var='empty'/>"
        )
    )
    assert forms.form_type(values) == "urn:x"
    assert forms.boolean(values["a"])
    assert values["m"] == ["a@b", "c@d"]
    assert forms.single(values["empty"]) == ""


def test_cancel_is_empty():
    x = etree.fromstring("<x xmlns='jabber:x:data' type='cancel'/>")
    assert forms.submitted(x) == {}


@pytest.mark.parametrize(
    "xml",
    [
        "<x xmlns='jabber:x:data' type='bogus'/>",
        "<x xmlns='jabber:x:data' type='form'/>",
        "<x xmlns='jabber:x:data' type='submit'><field><value>1</value></field></x>",
        "<x xmlns='jabber:x:data' type='submit'><field var='a'/><field var='a'/></x>",
        "<x xmlns='jabber:x:data' type='submit'><field var='a' type='nope'/></x>",
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='a' type='boolean'><value>1</value><value>0</value></field></x>",
    ],
)
def test_malformed_submissions_refused(xml):
    with pytest.raises(FormError):
        forms.submitted(etree.fromstring(xml))


@pytest.mark.parametrize("values", [[], ["yes"], ["1", "0"]])
def test_bad_booleans(values):
    with pytest.raises(FormError):
        forms.boolean(values)


def test_integers():
    assert forms.integer(["20"]) == 20
    with pytest.raises(FormError):
        forms.integer(["-1"])
    with pytest.raises(FormError):
        forms.integer(["x"])


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=5),
            st.sampled_from(sorted(forms.FIELD_TYPES) + [None]),
            st.lists(st.text(max_size=5), max_size=3),
        ),
        max_size=5,
    )
)
def test_any_submission_parses_or_is_refused(items):
    x = etree.Element(forms.X, type="submit")
    for var, kind, values in items:
        try:
            el = etree.SubElement(x, forms.FIELD, var=var)
            if kind:
                el.set("type", kind)
            for value in values:
                etree.SubElement(el, forms.VALUE).text = value
        except ValueError:
            return  # text lxml cannot hold
    try:
        result = forms.submitted(x)
    except FormError:
        return
    assert set(result) <= {var for var, _, _ in items}

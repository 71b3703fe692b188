"""A room's configuration (XEP-0045 section 10.2, form type muc#roomconfig): the values,
the form an owner fills in, reading the submitted form back, and the room's disco
features and muc#roominfo form.

Fields a submission leaves out keep their value; fields this service does not know are
ignored (clients send back the whole form they got, which may come from another server).
A malformed form is a ``FormError`` (bad-request); a value out of range is an
``UnacceptableValue`` (not-acceptable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lxml import etree

from protocols.xmpp import forms
from protocols.xmpp.forms import Field, FormError

NS_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
NS_ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
WHOIS = ("moderators", "anyone")
ALLOW_PM = ("anyone", "participants", "moderators", "none")
#: the most occupants and history messages a room may be configured for
MAX_USERS = 10_000
MAX_HISTORY = 1000


class UnacceptableValue(FormError):
    """A well-formed field whose value the room cannot take."""


@dataclass(frozen=True, slots=True)
class RoomConfig:
    name: str = ""
    description: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    password_protected: bool = False
    password: str = ""
    moderated: bool = False
    #: who sees occupants' real JIDs: moderators (semi-anonymous) or anyone
    whois: str = "moderators"
    max_users: int = 200
    #: messages kept for history on join
    history_length: int = 20
    #: participants (not only moderators) may change the subject
    change_subject: bool = False
    #: who may send private messages within the room
    allow_pm: str = "anyone"
    #: the room's messages are archived for XEP-0313 queries
    mam: bool = True

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RoomConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


def _var(name: str) -> str:
    return f"muc#roomconfig_{name}"


def form(config: RoomConfig) -> etree._Element:
    """The configuration form, filled with the current values."""
    flag = _flag
    return forms.build(
        "form",
        [
            Field(_var("roomname"), "text-single", "Name", [config.name]),
            Field(_var("roomdesc"), "text-single", "Description", [config.description]),
            Field(_var("persistentroom"), "boolean", "Persistent", [flag(config.persistent)]),
            Field(_var("publicroom"), "boolean", "Listed publicly", [flag(config.public)]),
            Field(_var("membersonly"), "boolean", "Members only", [flag(config.members_only)]),
            Field(
                _var("passwordprotectedroom"),
                "boolean",
                "Password protected",
                [flag(config.password_protected)],
            ),
            Field(_var("roomsecret"), "text-private", "Password", [config.password]),
            Field(_var("moderatedroom"), "boolean", "Moderated", [flag(config.moderated)]),
            Field(
                _var("whois"),
                "list-single",
                "Who may see real JIDs",
                [config.whois],
                [("Moderators", "moderators"), ("Anyone", "anyone")],
            ),
            Field(_var("maxusers"), "text-single", "Most occupants", [str(config.max_users)]),
            Field(
                _var("historylength"),
                "text-single",
                "Messages of history on join",
                [str(config.history_length)],
            ),
            Field(
                _var("changesubject"),
                "boolean",
                "Participants may change the subject",
                [flag(config.change_subject)],
            ),
            Field(
                _var("allowpm"),
                "list-single",
                "Who may send private messages",
                [config.allow_pm],
                [(value.capitalize(), value) for value in ALLOW_PM],
            ),
            Field("mam", "boolean", "Archive messages (XEP-0313)", [flag(config.mam)]),
        ],
        form_type=NS_ROOMCONFIG,
        title="Room configuration",
    )


def _flag(value: bool) -> str:
    return "1" if value else "0"


#: field var -> (attribute, reader); several vars may name one attribute (other servers')
_READERS: dict[str, tuple[str, str]] = {
    _var("roomname"): ("name", "text"),
    _var("roomdesc"): ("description", "text"),
    _var("persistentroom"): ("persistent", "bool"),
    _var("publicroom"): ("public", "bool"),
    _var("membersonly"): ("members_only", "bool"),
    _var("passwordprotectedroom"): ("password_protected", "bool"),
    _var("roomsecret"): ("password", "text"),
    _var("moderatedroom"): ("moderated", "bool"),
    _var("whois"): ("whois", "whois"),
    _var("maxusers"): ("max_users", "users"),
    _var("historylength"): ("history_length", "history"),
    "muc#maxhistoryfetch": ("history_length", "history"),
    _var("changesubject"): ("change_subject", "bool"),
    _var("allowpm"): ("allow_pm", "pm"),
    "mam": ("mam", "bool"),
    _var("enablearchiving"): ("mam", "bool"),
}


def apply(config: RoomConfig, x: etree._Element) -> RoomConfig:
    """The configuration after the submitted form ``x`` (type submit)."""
    values = forms.submitted(x)
    kind = forms.form_type(values)
    if kind is not None and kind != NS_ROOMCONFIG:
        raise FormError(f"FORM_TYPE {kind!r} is not {NS_ROOMCONFIG}")
    changes: dict[str, Any] = {}
    for var, found in values.items():
        reader = _READERS.get(var)
        if reader is not None:
            attribute, kind_of = reader
            changes[attribute] = _read(kind_of, found, var)
    result = replace(config, **changes)
    if result.password_protected and not result.password:
        raise UnacceptableValue("a password-protected room needs a password")
    return result


def _read(kind: str, values: list[str], var: str) -> Any:
    if kind == "text":
        return forms.single(values, var)
    if kind == "bool":
        return forms.boolean(values, var)
    if kind in ("users", "history"):
        text = forms.single(values, var)
        if kind == "users" and text in ("", "none"):
            return 0
        try:
            number = forms.integer([text], var)
        except FormError as exc:
            raise UnacceptableValue(str(exc)) from None
        if number > (MAX_USERS if kind == "users" else MAX_HISTORY):
            raise UnacceptableValue(f"{var} is too large")
        return number
    choices = WHOIS if kind == "whois" else ALLOW_PM
    value = forms.single(values, var)
    if value not in choices:
        raise UnacceptableValue(f"{var} must be one of {', '.join(choices)}")
    return value


def features(config: RoomConfig) -> list[str]:
    """The room's disco features that describe its configuration (XEP-0045 15.2)."""
    return [
        "muc_persistent" if config.persistent else "muc_temporary",
        "muc_public" if config.public else "muc_hidden",
        "muc_membersonly" if config.members_only else "muc_open",
        "muc_passwordprotected" if config.password_protected else "muc_unsecured",
        "muc_moderated" if config.moderated else "muc_unmoderated",
        "muc_nonanonymous" if config.whois == "anyone" else "muc_semianonymous",
    ]


def room_info(config: RoomConfig, occupants: int, subject: str) -> etree._Element:
    """The muc#roominfo form of the room's disco#info (XEP-0045 6.4)."""
    return forms.build(
        "result",
        [
            Field("muc#roominfo_description", values=[config.description]),
            Field("muc#roominfo_occupants", values=[str(occupants)]),
            Field("muc#roominfo_subject", values=[subject]),
            Field("muc#roomconfig_roomname", values=[config.name]),
            Field("muc#roominfo_changesubject", "boolean", values=[_flag(config.change_subject)]),
        ],
        form_type=NS_ROOMINFO,
    )

"""The presence subscription state machine of RFC 6121 section 3 and Appendix A, as pure
functions over one side's view of one contact.

A user's state towards a contact is four flags: ``to`` (the user gets the contact's
presence), ``from_`` (the contact gets the user's), ``pending_out`` (the user asked for
the contact's presence, no answer yet: ``ask='subscribe'``), ``pending_in`` (the contact
asked for the user's presence, no answer yet), plus ``approved`` (the user pre-approved a
request the contact has not sent yet, RFC 6121 3.4).  A pending flag never coexists with
the subscription it asks for.

``outbound`` is the user's server handling a subscription stanza the user sends (Appendix
A.2); ``inbound`` is the server handling one that arrives for the user (Appendix A.3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Kind = Literal["subscribe", "subscribed", "unsubscribe", "unsubscribed"]
KINDS: tuple[Kind, ...] = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")


@dataclass(frozen=True, slots=True)
class State:
    to: bool = False
    from_: bool = False
    pending_out: bool = False
    pending_in: bool = False
    approved: bool = False

    @property
    def subscription(self) -> str:
        """The roster item's ``subscription`` attribute."""
        if self.to and self.from_:
            return "both"
        return "to" if self.to else "from" if self.from_ else "none"


NONE = State()


@dataclass(frozen=True, slots=True)
class Outbound:
    state: State
    #: the stanza goes on to the contact
    route: bool


@dataclass(frozen=True, slots=True)
class Inbound:
    state: State
    #: the stanza is delivered to the user's interested resources
    deliver: bool
    #: the server answers the sender itself with a 'subscribed' (already subscribed, or
    #: pre-approved)
    auto_subscribed: bool = False


def outbound(kind: Kind, state: State) -> Outbound:
    """The user sends ``kind`` to the contact (RFC 6121 A.2)."""
    if kind == "subscribe":
        # routed even without a change of state: the contact may have lost the request
        return Outbound(state if state.to else replace(state, pending_out=True), True)
    if kind == "unsubscribe":
        return Outbound(replace(state, to=False, pending_out=False), True)
    if kind == "subscribed":
        if state.pending_in:
            return Outbound(replace(state, from_=True, pending_in=False, approved=False), True)
        if state.from_:
            return Outbound(state, False)
        return Outbound(replace(state, approved=True), False)  # pre-approval (3.4)
    # unsubscribed: cancels the contact's subscription, denies its request, or withdraws
    # a pre-approval
    if state.from_ or state.pending_in:
        return Outbound(replace(state, from_=False, pending_in=False, approved=False), True)
    return Outbound(replace(state, approved=False), False)


def inbound(kind: Kind, state: State) -> Inbound:
    """``kind`` arrives from the contact for the user (RFC 6121 A.3)."""
    if kind == "subscribe":
        if state.from_:
            return Inbound(state, False, auto_subscribed=True)
        if state.approved:
            return Inbound(replace(state, from_=True, approved=False), False, True)
        if state.pending_in:
            return Inbound(state, False)
        return Inbound(replace(state, pending_in=True), True)
    if kind == "unsubscribe":
        if state.from_ or state.pending_in:
            return Inbound(replace(state, from_=False, pending_in=False), True)
        return Inbound(state, False)
    if kind == "subscribed":
        if state.pending_out:
            return Inbound(replace(state, to=True, pending_out=False), True)
        return Inbound(state, False)
    # unsubscribed
    if state.to or state.pending_out:
        return Inbound(replace(state, to=False, pending_out=False), True)
    return Inbound(state, False)

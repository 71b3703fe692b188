"""The subscription state machine against the tables of RFC 6121 Appendix A."""

from __future__ import annotations

import pytest

from protocols.xmpp.subscription import KINDS, State, inbound, outbound

#: the nine states of Appendix A.1, by the names the RFC gives them
STATES = {
    "None": State(),
    "None + Pending Out": State(pending_out=True),
    "None + Pending In": State(pending_in=True),
    "None + Pending Out/In": State(pending_out=True, pending_in=True),
    "To": State(to=True),
    "To + Pending In": State(to=True, pending_in=True),
    "From": State(from_=True),
    "From + Pending Out": State(from_=True, pending_out=True),
    "Both": State(to=True, from_=True),
}

# Appendix A.2: the user's server handling what the user sends; existing -> new state
OUTBOUND = {
    "subscribe": {
        "None": "None + Pending Out",
        "None + Pending Out": "None + Pending Out",
        "None + Pending In": "None + Pending Out/In",
        "None + Pending Out/In": "None + Pending Out/In",
        "To": "To",
        "To + Pending In": "To + Pending In",
        "From": "From + Pending Out",
        "From + Pending Out": "From + Pending Out",
        "Both": "Both",
    },
    "unsubscribe": {
        "None": "None",
        "None + Pending Out": "None",
        "None + Pending In": "None + Pending In",
        "None + Pending Out/In": "None + Pending In",
        "To": "None",
        "To + Pending In": "None + Pending In",
        "From": "From",
        "From + Pending Out": "From",
        "Both": "From",
    },
    "subscribed": {
        "None": "None",
        "None + Pending Out": "None + Pending Out",
        "None + Pending In": "From",
        "None + Pending Out/In": "From + Pending Out",
        "To": "To",
        "To + Pending In": "Both",
        "From": "From",
        "From + Pending Out": "From + Pending Out",
        "Both": "Both",
    },
    "unsubscribed": {
        "None": "None",
        "None + Pending Out": "None + Pending Out",
        "None + Pending In": "None",
        "None + Pending Out/In": "None + Pending Out",
        "To": "To",
        "To + Pending In": "To",
        "From": "None",
        "From + Pending Out": "None + Pending Out",
        "Both": "To",
    },
}

# Appendix A.3: the server handling what arrives for the user; existing -> (deliver, new)
INBOUND = {
    "subscribe": {
        "None": (True, "None + Pending In"),
        "None + Pending Out": (True, "None + Pending Out/In"),
        "None + Pending In": (False, "None + Pending In"),
        "None + Pending Out/In": (False, "None + Pending Out/In"),
        "To": (True, "To + Pending In"),
        "To + Pending In": (False, "To + Pending In"),
        "From": (False, "From"),
        "From + Pending Out": (False, "From + Pending Out"),
        "Both": (False, "Both"),
    },
    "unsubscribe": {
        "None": (False, "None"),
        "None + Pending Out": (False, "None + Pending Out"),
        "None + Pending In": (True, "None"),
        "None + Pending Out/In": (True, "None + Pending Out"),
        "To": (False, "To"),
        "To + Pending In": (True, "To"),
        "From": (True, "None"),
        "From + Pending Out": (True, "None + Pending Out"),
        "Both": (True, "To"),
    },
    "subscribed": {
        "None": (False, "None"),
        "None + Pending Out": (True, "To"),
        "None + Pending In": (False, "None + Pending In"),
        "None + Pending Out/In": (True, "To + Pending In"),
        "To": (False, "To"),
        "To + Pending In": (False, "To + Pending In"),
        "From": (False, "From"),
        "From + Pending Out": (True, "Both"),
        "Both": (False, "Both"),
    },
    "unsubscribed": {
        "None": (False, "None"),
        "None + Pending Out": (True, "None"),
        "None + Pending In": (False, "None + Pending In"),
        "None + Pending Out/In": (True, "None + Pending In"),
        "To": (True, "None"),
        "To + Pending In": (True, "None + Pending In"),
        "From": (False, "From"),
        "From + Pending Out": (True, "From"),
        "Both": (True, "From"),
    },
}

CASES = [(kind, name) for kind in KINDS for name in STATES]


@pytest.mark.parametrize(("kind", "existing"), CASES)
def test_outbound_follows_appendix_a2(kind: str, existing: str) -> None:
    result = outbound(kind, STATES[existing])  # type: ignore[arg-type]
    assert result.state == _approved_aside(STATES[OUTBOUND[kind][existing]], result.state)


@pytest.mark.parametrize(("kind", "existing"), CASES)
def test_inbound_follows_appendix_a3(kind: str, existing: str) -> None:
    deliver, new = INBOUND[kind][existing]
    result = inbound(kind, STATES[existing])  # type: ignore[arg-type]
    assert (result.deliver, result.state) == (deliver, STATES[new])


def _approved_aside(expected: State, actual: State) -> State:
    """Appendix A leaves pre-approval out: compare the other flags only."""
    return State(
        expected.to, expected.from_, expected.pending_out, expected.pending_in, actual.approved
    )


@pytest.mark.parametrize("existing", ["None", "None + Pending Out", "To"])
def test_subscribed_without_a_request_is_a_pre_approval(existing: str) -> None:
    result = outbound("subscribed", STATES[existing])
    assert result.state.approved and not result.route


@pytest.mark.parametrize("existing", ["None", "None + Pending Out", "To"])
def test_pre_approved_request_is_answered_by_the_server(existing: str) -> None:
    approved = State(**{**_flags(STATES[existing]), "approved": True})
    result = inbound("subscribe", approved)
    assert result.auto_subscribed and not result.deliver
    assert result.state.from_ and not result.state.approved


def test_unsubscribed_withdraws_a_pre_approval() -> None:
    result = outbound("unsubscribed", State(approved=True))
    assert result.state == State() and not result.route


@pytest.mark.parametrize("existing", ["From", "From + Pending Out", "Both"])
def test_request_from_a_subscriber_is_answered_by_the_server(existing: str) -> None:
    result = inbound("subscribe", STATES[existing])
    assert result.auto_subscribed and result.state == STATES[existing]


@pytest.mark.parametrize(
    ("kind", "routed"),
    [
        ("subscribe", {name: True for name in STATES}),
        ("unsubscribe", {name: True for name in STATES}),
        ("subscribed", {n: "Pending In" in n or "Out/In" in n for n in STATES}),
        ("unsubscribed", {n: "In" in n or n.startswith(("From", "Both")) for n in STATES}),
    ],
)
def test_what_the_user_sends_goes_on_when_it_means_something(
    kind: str, routed: dict[str, bool]
) -> None:
    for name, state in STATES.items():
        assert outbound(kind, state).route == routed[name], name  # type: ignore[arg-type]


def test_subscription_attribute() -> None:
    assert [STATES[n].subscription for n in ("None", "To", "From", "Both")] == [
        "none",
        "to",
        "from",
        "both",
    ]


def _flags(state: State) -> dict[str, bool]:
    return {
        "to": state.to,
        "from_": state.from_,
        "pending_out": state.pending_out,
        "pending_in": state.pending_in,
    }

"""The counters and the unacked queue of XEP-0198 stream management, sans-I/O."""

from __future__ import annotations

import pytest

from protocols.xmpp.sm_state import MAX_UNACKED, REQUEST, SEQ_MOD, AckOutOfRange, StreamState


def state() -> StreamState:
    return StreamState("id", resumable=True, timeout=300)


def test_the_first_stanza_carries_an_ack_request_and_later_ones_wait_for_its_answer() -> None:
    sm = state()
    assert sm.outgoing(b"<message/>") == b"<message/>" + REQUEST
    assert sm.outgoing(b"<presence/>") == b"<presence/>"
    sm.acked(1)
    assert sm.outgoing(b"<iq/>") == b"<iq/>" + REQUEST


def test_an_ack_drops_what_it_covers_and_keeps_the_rest_in_order() -> None:
    sm = state()
    for n in range(5):
        sm.outgoing(f"<message id='{n}'/>".encode())
    sm.acked(3)
    assert list(sm.unacked) == [b"<message id='3'/>", b"<message id='4'/>"]
    sm.acked(3)  # a repeated ack changes nothing
    assert len(sm.unacked) == 2
    sm.acked(5)
    assert not sm.unacked


def test_an_ack_beyond_what_was_sent_or_behind_the_last_one_is_refused() -> None:
    sm = state()
    sm.outgoing(b"<message/>")
    sm.outgoing(b"<message/>")
    with pytest.raises(AckOutOfRange):
        sm.acked(3)
    sm.acked(2)
    with pytest.raises(AckOutOfRange):
        sm.acked(1)


def test_outbound_count_and_acks_wrap_at_two_to_the_32() -> None:
    sm = state()
    sm.sent = SEQ_MOD - 2  # as if 2^32 - 2 stanzas had been sent and acked
    for n in range(4):
        sm.outgoing(f"<m n='{n}'/>".encode())
    assert sm.sent == 2
    assert sm.acked_count == SEQ_MOD - 2
    sm.acked(SEQ_MOD - 1)
    assert len(sm.unacked) == 3
    sm.acked(1)  # past the wrap: two more handled
    assert list(sm.unacked) == [b"<m n='3'/>"]
    with pytest.raises(AckOutOfRange):
        sm.acked(3)


def test_inbound_count_wraps_at_two_to_the_32() -> None:
    sm = state()
    sm.handled = SEQ_MOD - 1
    sm.received()
    assert sm.handled == 0
    sm.received()
    assert sm.answer() == b"<a xmlns='urn:xmpp:sm:3' h='1'/>"


def test_a_hibernating_stream_queues_without_writing_and_wakes_on_overflow() -> None:
    sm = state()
    woken: list[bool] = []
    sm.hibernating = True
    sm.wake = lambda: woken.append(True)
    for _ in range(MAX_UNACKED):
        assert sm.outgoing(b"<message/>") is None
    assert not woken
    sm.outgoing(b"<message/>")
    assert woken
    assert len(sm.unacked) == MAX_UNACKED + 1

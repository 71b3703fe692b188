"""The bookkeeping of XEP-0363 slots: requests, the size limit and the quota, the PUT's
checks, expiry; all on a given clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.xmpp.upload.slots import (
    MAX_OPEN_SLOTS,
    SLOT_LIFETIME,
    FileTooLarge,
    Limits,
    PutRefused,
    QuotaReached,
    SlotRefused,
    Uploads,
)

LIMITS = Limits(max_file_size=1000, quota=2500, expire_after=3600)
NOW = 1_700_000_000.0


def fill(uploads: Uploads, owner: str, size: int, now: float = NOW) -> str:
    """Request a slot and PUT it; the token."""
    slot = uploads.request(owner, "f.bin", str(size), None, now)
    claimed = uploads.claim(slot.token, f"Bearer {slot.secret}", None, size, now)
    uploads.add(uploads.filled(claimed, None, now))
    return slot.token


def test_a_slot_carries_the_sanitised_request() -> None:
    uploads = Uploads(LIMITS)
    slot = uploads.request("alice", "../x/photo.jpg", "512", "image/jpeg", NOW)
    assert (slot.owner, slot.filename, slot.size, slot.content_type) == (
        "alice",
        "photo.jpg",
        512,
        "image/jpeg",
    )
    assert slot.expires == NOW + SLOT_LIFETIME
    assert slot.token != slot.secret


@pytest.mark.parametrize(
    ("filename", "size", "content_type"),
    [
        (None, "1", None),
        ("..", "1", None),
        ("a", None, None),
        ("a", "-1", None),
        ("a", "1.5", None),
        ("a", "+3", None),
        ("a", "ten", None),
        ("a", "9" * 30, None),
        ("a", "1", "not a type"),
    ],
)
def test_malformed_requests_are_bad_requests(
    filename: str | None, size: str | None, content_type: str | None
) -> None:
    with pytest.raises(SlotRefused) as refused:
        Uploads(LIMITS).request("alice", filename, size, content_type, NOW)
    assert refused.type is SlotRefused and refused.value.condition == "bad-request"


def test_a_file_over_the_limit_is_not_acceptable_with_the_limit() -> None:
    with pytest.raises(FileTooLarge) as refused:
        Uploads(LIMITS).request("alice", "big", "1001", None, NOW)
    assert (refused.value.condition, refused.value.max_file_size) == ("not-acceptable", 1000)


def test_the_quota_counts_stored_files_and_open_slots_per_user() -> None:
    uploads = Uploads(LIMITS)
    fill(uploads, "alice", 1000)
    uploads.request("alice", "open", "1000", None, NOW)
    assert uploads.usage("alice") == 2000
    with pytest.raises(QuotaReached) as refused:
        uploads.request("alice", "third", "501", None, NOW + 10)
    assert refused.value.condition == "resource-constraint"
    assert refused.value.retry_at == NOW + SLOT_LIFETIME  # when the open slot lapses
    uploads.request("alice", "fits", "500", None, NOW + 10)
    uploads.request("bob", "other user", "1000", None, NOW + 10)


def test_an_unused_slot_gives_its_space_back_when_it_expires() -> None:
    uploads = Uploads(LIMITS)
    for _ in range(2):
        uploads.request("alice", "f", "1000", None, NOW)
    with pytest.raises(QuotaReached):
        uploads.request("alice", "f", "1000", None, NOW + 1)
    uploads.request("alice", "f", "1000", None, NOW + SLOT_LIFETIME)


def test_a_user_has_a_bounded_number_of_open_slots() -> None:
    uploads = Uploads(Limits(max_file_size=10, quota=0, expire_after=0))
    for _ in range(MAX_OPEN_SLOTS):
        uploads.request("alice", "f", "0", None, NOW)
    with pytest.raises(QuotaReached):
        uploads.request("alice", "f", "0", None, NOW)


def test_a_put_fills_its_slot_once() -> None:
    uploads = Uploads(LIMITS)
    slot = uploads.request("alice", "f.txt", "3", "text/plain", NOW)
    auth = f"Bearer {slot.secret}"
    assert uploads.claim(slot.token, auth, "Text/Plain; charset=utf-8", 3, NOW) == slot
    for _ in ("while it is written", "once it is stored"):
        with pytest.raises(PutRefused) as refused:
            uploads.claim(slot.token, auth, "text/plain", 3, NOW)
        assert refused.value.status == 409
        assert uploads.usage("alice") == 3
        uploads.add(uploads.filled(slot, "text/plain", NOW))


def test_a_slot_whose_bytes_could_not_be_written_frees_its_space() -> None:
    uploads = Uploads(LIMITS)
    slot = uploads.request("alice", "f.txt", "1000", None, NOW)
    uploads.claim(slot.token, f"Bearer {slot.secret}", None, 1000, NOW)
    uploads.abandon(slot)
    assert uploads.usage("alice") == 0
    assert uploads.file(slot.token, NOW) is None


@pytest.mark.parametrize(
    ("token", "auth", "content_type", "length", "later", "status"),
    [
        ("unknown", "right", "text/plain", 3, 0, 404),
        ("right", None, "text/plain", 3, 0, 403),
        ("right", "Bearer wrong", "text/plain", 3, 0, 403),
        ("right", "right", "image/png", 3, 0, 415),
        ("right", "right", None, 3, 0, 415),
        ("right", "right", "text/plain", 4, 0, 413),
        ("right", "right", "text/plain", 2, 0, 400),
        ("right", "right", "text/plain", 3, SLOT_LIFETIME, 410),
    ],
)
def test_a_put_that_does_not_match_its_slot_is_refused(
    token: str, auth: str | None, content_type: str | None, length: int, later: float, status: int
) -> None:
    uploads = Uploads(LIMITS)
    slot = uploads.request("alice", "f.txt", "3", "text/plain", NOW)
    token = slot.token if token == "right" else token
    auth = f"Bearer {slot.secret}" if auth == "right" else auth
    with pytest.raises(PutRefused) as refused:
        uploads.claim(token, auth, content_type, length, NOW + later)
    assert refused.value.status == status
    if status != 410:  # a refused PUT leaves the slot open for a good one
        uploads.claim(slot.token, f"Bearer {slot.secret}", "text/plain", 3, NOW)


def test_the_content_type_is_the_slots_or_the_puts_or_octet_stream() -> None:
    uploads = Uploads(LIMITS)
    typed = uploads.request("alice", "a", "1", "image/png", NOW)
    untyped = uploads.request("alice", "b", "1", None, NOW)
    assert uploads.filled(typed, "image/png", NOW).content_type == "image/png"
    assert uploads.filled(untyped, "text/plain", NOW).content_type == "text/plain"
    assert uploads.filled(untyped, "bad\r\ntype", NOW).content_type == "application/octet-stream"
    assert uploads.filled(untyped, None, NOW).content_type == "application/octet-stream"


def test_files_expire_after_their_lifetime() -> None:
    uploads = Uploads(LIMITS)
    token = fill(uploads, "alice", 10)
    assert uploads.file(token, NOW + 3599) is not None
    assert uploads.file(token, NOW + 3600) is None
    uploads.request("alice", "g", "1", None, NOW + 3600)  # leaves the removal to the sweep
    assert [f.token for f in uploads.expire(NOW + 3600)] == [token]
    assert uploads.files == {} and uploads.usage("alice") == 1


def test_files_are_kept_for_ever_when_lifetime_is_zero() -> None:
    uploads = Uploads(Limits(max_file_size=10, quota=0, expire_after=0))
    token = fill(uploads, "alice", 10)
    assert uploads.expire(NOW + 10**9) == []
    assert uploads.file(token, NOW + 10**9) is not None


def test_the_quota_refusal_says_when_stored_files_free_space() -> None:
    uploads = Uploads(LIMITS)
    fill(uploads, "alice", 1000, NOW)
    fill(uploads, "alice", 1000, NOW + 100)
    with pytest.raises(QuotaReached) as refused:
        uploads.request("alice", "f", "1000", None, NOW + 200)
    assert refused.value.retry_at == NOW + 3600


@given(st.lists(st.tuples(st.sampled_from(["alice", "bob"]), st.integers(0, 1200)), max_size=40))
def test_no_user_ever_holds_more_than_the_quota(requests: list[tuple[str, int]]) -> None:
    uploads = Uploads(LIMITS)
    for i, (owner, size) in enumerate(requests):
        try:
            slot = uploads.request(owner, "f", str(size), None, NOW + i)
        except SlotRefused:
            continue
        if i % 2:  # every other slot is filled, the rest stay open
            uploads.claim(slot.token, f"Bearer {slot.secret}", None, size, NOW + i)
            uploads.add(uploads.filled(slot, None, NOW + i))
        assert uploads.usage(owner) <= LIMITS.quota


def test_a_puts_headers_are_checked_without_taking_its_slot() -> None:
    uploads = Uploads(LIMITS)
    slot = uploads.request("alice", "f.txt", "3", None, NOW)
    auth = f"Bearer {slot.secret}"
    assert uploads.check(slot.token, auth, None, None, NOW) == slot  # length not known yet
    with pytest.raises(PutRefused) as refused:
        uploads.check(slot.token, auth, None, 4, NOW)
    assert refused.value.status == 413
    assert uploads.claim(slot.token, auth, None, 3, NOW) == slot

"""File names and content types from slot requests (XEP-0363): what reaches the disk is one
harmless path component, whatever a client sends."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.xmpp.upload.names import (
    MAX_NAME_BYTES,
    TOKEN,
    new_token,
    sanitise_filename,
    valid_content_type,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/absolute/path.txt", "path.txt"),
        (".bashrc", "bashrc"),
        ("...hidden", "hidden"),
        ("  spaced name.png  ", "spaced name.png"),
        ("a\x00b\nc.txt", "a_b_c.txt"),
        ('what?*"<>|:.txt', "what_______.txt"),
        ("right\u202eto-left.txt", "right_to-left.txt"),
        ("café.txt", "café.txt"),
    ],
)
def test_names_are_reduced_to_their_last_harmless_segment(raw: str, clean: str) -> None:
    assert sanitise_filename(raw) == clean


@pytest.mark.parametrize("raw", ["", "   ", ".", "..", "dir/", "a/..", "....", "\\"])
def test_nothing_left_is_no_name(raw: str) -> None:
    assert sanitise_filename(raw) is None


def test_a_long_name_is_shortened_keeping_its_extension() -> None:
    name = sanitise_filename("é" * 300 + ".jpeg")
    assert name is not None and name.endswith("é.jpeg")
    assert len(name.encode()) <= MAX_NAME_BYTES


@given(st.text())
def test_a_sanitised_name_is_one_path_component_and_stable(raw: str) -> None:
    name = sanitise_filename(raw)
    if name is None:
        return
    base = Path("/srv/uploads/token")
    assert (base / name).parent == base
    assert name not in (".", "..") and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert all(char >= " " for char in name)
    assert 0 < len(name.encode()) <= MAX_NAME_BYTES
    assert sanitise_filename(name) == name


@given(st.lists(st.sampled_from(["..", ".", "a", "/", "\\", "b.c", " "]), max_size=12))
def test_dot_segments_never_survive(parts: list[str]) -> None:
    name = sanitise_filename("".join(parts))
    assert name is None or not name.startswith(".")


@pytest.mark.parametrize(
    "text", ["image/png", "text/plain; charset=utf-8", 'application/x-thing; a="b c"']
)
def test_content_types(text: str) -> None:
    assert valid_content_type(text)


@pytest.mark.parametrize(
    "text", ["", "png", "image/png\r\nset-cookie: x=y", "a/b; c", "a b/c", "x/" + "y" * 300]
)
def test_content_types_refused(text: str) -> None:
    assert not valid_content_type(text)


@given(st.text(max_size=300))
def test_a_valid_content_type_is_a_safe_header_value(text: str) -> None:
    if valid_content_type(text):
        assert all(" " <= char < "\x7f" for char in text)


def test_tokens_are_unguessable_and_url_safe() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(TOKEN.fullmatch(token) for token in tokens)

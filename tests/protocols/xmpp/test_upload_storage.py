"""Uploaded files on disk: written whole or not at all, found again after a restart, and
never outside their own directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.xmpp.upload.names import new_token, sanitise_filename
from protocols.xmpp.upload.slots import StoredFile
from protocols.xmpp.upload.storage import INCOMING, META, FileStore


def stored_file(name: str = "photo.jpg", size: int = 5, created: float = 1.0) -> StoredFile:
    return StoredFile(new_token(), "alice", name, size, "image/jpeg", created)


def test_a_written_file_is_loaded_again_oldest_first(tmp_path: Path) -> None:
    files = FileStore(tmp_path)
    files.load()
    newer, older = stored_file(created=20.0), stored_file("b.txt", 3, created=10.0)
    files.write(newer, b"hello")
    files.write(older, b"abc")
    assert (tmp_path / newer.token / "photo.jpg").read_bytes() == b"hello"
    assert FileStore(tmp_path).load() == [older, newer]
    assert files.read(older) == b"abc"


def test_unfinished_and_unreadable_uploads_are_removed_at_load(tmp_path: Path) -> None:
    files = FileStore(tmp_path)
    files.load()
    kept = stored_file()
    files.write(kept, b"hello")
    (tmp_path / INCOMING / new_token()).mkdir(parents=True)  # a crash mid-write
    no_meta = tmp_path / new_token()
    no_meta.mkdir()
    (no_meta / "x").write_bytes(b"x")
    truncated = stored_file()
    files.write(truncated, b"hello")
    (tmp_path / truncated.token / truncated.filename).write_bytes(b"he")
    escaping = stored_file()
    files.write(escaping, b"hello")
    meta = tmp_path / escaping.token / META
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "filename": "../../x"}))
    assert FileStore(tmp_path).load() == [kept]
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.token]


def test_remove_deletes_the_uploads_directory(tmp_path: Path) -> None:
    files = FileStore(tmp_path)
    files.load()
    gone = stored_file()
    files.write(gone, b"hello")
    files.remove(gone)
    assert not (tmp_path / gone.token).exists()


@pytest.mark.parametrize(
    ("token", "name"),
    [
        ("../../../../tmp/x", "a"),
        (new_token(), "../escape"),
        (new_token(), ".meta.json"),
        (new_token(), "a/b"),
        (new_token(), ".."),
    ],
)
def test_a_path_outside_the_upload_directory_is_refused(
    tmp_path: Path, token: str, name: str
) -> None:
    files = FileStore(tmp_path / "uploads")
    files.load()
    unsafe = StoredFile(token, "alice", name, 1, "text/plain", 1.0)
    with pytest.raises(ValueError):
        files.write(unsafe, b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["uploads"]
    assert list((tmp_path / "uploads").iterdir()) == []


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1))
def test_any_sanitised_name_is_written_inside_its_own_directory(
    tmp_path_factory: pytest.TempPathFactory, raw: str
) -> None:
    name = sanitise_filename(raw)
    if name is None:
        return
    root = tmp_path_factory.mktemp("uploads")
    files = FileStore(root)
    files.load()
    stored = StoredFile(new_token(), "alice", name, 2, "text/plain", 1.0)
    files.write(stored, b"ok")
    written = [p for p in root.rglob("*") if p.is_file() and p.name != META]
    assert written == [root / stored.token / name]
    assert FileStore(root).load() == [stored]

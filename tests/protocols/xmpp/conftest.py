"""Fixtures for the XMPP front end's sans-I/O tests."""

from __future__ import annotations

import pytest

from broker.auth import UserDB

#: users of the sans-I/O tests, name -> password
PASSWORDS = {"alice": "alicepw", "bob": "bobpw"}


@pytest.fixture(scope="session")
def users() -> UserDB:
    """A real user database with guest (loopback only) and the users of ``PASSWORDS``."""
    db = UserDB()
    db.ensure_default_users()
    for name, password in PASSWORDS.items():
        db.add(name, password)
    return db

"""Fixtures for the MQTT front end's sans-I/O tests: a front end over an in-memory core."""

from __future__ import annotations

import pytest
import trio

from broker.acl import TopicACL
from broker.auth import UserDB
from broker.config import AclRule, MqttConfig
from broker.core import Broker
from broker.store.memory import MemoryStore
from protocols.mqtt.frontend import MQTTFrontEnd


@pytest.fixture
def front() -> MQTTFrontEnd:
    store = MemoryStore()
    trio.run(store.open)
    users = UserDB()
    users.ensure_default_users()
    users.add("reader", "pw")
    users.set_permissions("reader", "/", "", "", ".*")
    users.add("writer", "pw")
    users.set_permissions("writer", "/", "", ".*", "")
    acl = TopicACL([AclRule(topic="secret/#", allow=False)])
    return MQTTFrontEnd(Broker(store, users, acl), MqttConfig())

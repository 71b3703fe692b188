"""Fixtures for the MQTT front end's sans-I/O tests: a front end over an in-memory core."""

from __future__ import annotations

import pytest

from protocols.mqtt.frontend import MQTTFrontEnd
from tests.protocols.mqtt.sansio import new_front


@pytest.fixture
def front() -> MQTTFrontEnd:
    return new_front()

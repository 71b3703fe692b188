"""MQTT 5 subscription options (no-local, retain-as-published, retain handling),
subscription identifiers and shared subscriptions."""

from __future__ import annotations

import asyncio
import queue

import aiomqtt
import pytest

from .brokers import BrokerProcess, skip_on_mosquitto
from .clients import Clients
from .mqtt5 import TIMEOUT, ack5, aio5, flush5, paho5, paho5_unconnected, raw5, sub_options
from .rawmqtt import PUBACK


@pytest.mark.mqtt5("no-local")
def test_no_local(broker: BrokerProcess, clients: Clients) -> None:
    me = paho5(clients, broker, "me")
    other = paho5(clients, broker, "other")
    assert me.subscribe("v5/nl", 1, no_local=True) == [1]
    assert other.subscribe("v5/nl", 1) == [1]
    me.publish("v5/nl", b"mine", qos=1)
    assert other.get().payload == b"mine"
    flush5(me, other, "v5/nl")  # "mine" would have come before the marker
    other.publish("v5/nl", b"theirs", qos=1)
    assert me.get().payload == b"theirs"


@pytest.mark.mqtt5("retain-as-published")
def test_retain_as_published(broker: BrokerProcess, clients: Clients) -> None:
    keeps = paho5(clients, broker, "keeps-flag")
    clears = paho5(clients, broker, "clears-flag")
    assert keeps.subscribe("v5/rap", 1, rap=True) == [1]
    assert clears.subscribe("v5/rap", 1) == [1]
    pub = paho5(clients, broker, "pub")
    pub.publish("v5/rap", b"live retained", qos=1, retain=True)
    pub.publish("v5/rap", b"live plain", qos=1)
    assert [(m.payload, m.retain) for m in (keeps.get(), keeps.get())] == [
        (b"live retained", True),
        (b"live plain", False),
    ]
    assert [(m.payload, m.retain) for m in (clears.get(), clears.get())] == [
        (b"live retained", False),
        (b"live plain", False),
    ]
    # a retained message sent because of a (new) subscription is always flagged
    late = paho5(clients, broker, "late")
    assert late.subscribe("v5/rap", 1) == [1]
    msg = late.get()
    assert (msg.payload, msg.retain) == (b"live retained", True)


@pytest.mark.mqtt5("retain-handling")
@pytest.mark.parametrize(
    ("handling", "on_first", "on_again"),
    [(0, True, True), (1, True, False), (2, False, False)],
    ids=["0-always", "1-new-only", "2-never"],
)
def test_retain_handling(
    broker: BrokerProcess, clients: Clients, handling: int, on_first: bool, on_again: bool
) -> None:
    pub = paho5(clients, broker, "pub")
    pub.publish("v5/rh", b"retained", qos=1, retain=True)
    sub = paho5(clients, broker, "sub")
    for expected in (on_first, on_again):  # subscribe, then the same subscription again
        assert sub.subscribe("v5/rh", 1, retain_handling=handling) == [1]
        if expected:
            msg = sub.get()
            assert (msg.payload, msg.retain) == (b"retained", True)
        flush5(sub, pub, "v5/rh")


@pytest.mark.mqtt5("subscription-identifiers")
@skip_on_mosquitto("2.0.11 sends one copy per matching subscription (the spec allows it)")
def test_overlapping_subscriptions_one_copy_with_every_identifier(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub = paho5(clients, broker, "ids")
    assert sub.subscribe("v5/si/#", 1, sub_id=1) == [1]
    assert sub.subscribe("v5/si/+/t", 2, sub_id=2) == [2]
    assert sub.subscribe("v5/si/a/t", 0) == [0]  # no identifier
    pub = paho5(clients, broker, "pub")
    pub.publish("v5/si/a/t", b"all three", qos=2)
    msg = sub.get()
    assert (msg.payload, msg.qos) == (b"all three", 2)
    assert sorted(msg.properties.SubscriptionIdentifier) == [1, 2]
    pub.publish("v5/si/b", b"only one", qos=1)
    msg = sub.get()
    assert msg.payload == b"only one"
    assert msg.properties.SubscriptionIdentifier == [1]
    flush5(sub, pub, "v5/si/b")  # no second copy of either


@pytest.mark.mqtt5("subscription-identifiers")
def test_subscription_identifier_replaced_and_large(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub = raw5(clients, broker)
    assert sub.connect5("ids-raw").reason == 0
    props = {"subscription_identifier": 268_435_455}  # the largest there is
    assert sub.subscribe5([("v5/sid", sub_options(0))], packet_id=1, props=props) == [0]
    pub = paho5(clients, broker, "pub")
    pub.publish("v5/sid", b"big id", qos=1)
    assert sub.get().props["subscription_identifier"] == [268_435_455]
    # subscribing again without one removes it
    assert sub.subscribe5([("v5/sid", sub_options(0))], packet_id=2) == [0]
    pub.publish("v5/sid", b"no id", qos=1)
    msg = sub.get()
    assert msg.payload == b"no id" and "subscription_identifier" not in msg.props


SHARED = "$share/workers/v5/jobs"


@pytest.mark.mqtt5("shared-subscriptions")
def test_shared_subscription_balances_across_sessions(
    broker: BrokerProcess, clients: Clients
) -> None:
    members = [paho5(clients, broker, f"worker{i}") for i in range(2)]
    combined: queue.Queue[tuple[int, bytes]] = queue.Queue()
    for i, member in enumerate(members):
        member.client.on_message = lambda _c, _u, msg, i=i: combined.put((i, msg.payload))
        assert member.subscribe(SHARED, 1) == [1]
    plain = paho5(clients, broker, "plain")
    assert plain.subscribe("v5/jobs", 1) == [1]
    pub = paho5(clients, broker, "pub")
    sent = [f"job{i}".encode() for i in range(20)]
    for payload in sent:
        pub.publish("v5/jobs", payload, qos=1)
    # the plain subscriber gets every one; the group gets each one exactly once
    assert [plain.get().payload for _ in sent] == sent
    got = [combined.get(timeout=TIMEOUT) for _ in sent]
    assert sorted(payload for _i, payload in got) == sorted(sent)
    counts = [sum(1 for i, _p in got if i == member) for member in (0, 1)]
    assert all(counts), f"not balanced: {counts}"
    flush5(plain, pub, "v5/jobs")  # everything routed; any duplicate would be queued now
    assert combined.qsize() <= 1  # the marker itself, taken by one member
    assert all(p.startswith(b"marker-") for _i, p in list(combined.queue))


@pytest.mark.mqtt5("shared-subscriptions")
@skip_on_mosquitto("2.0.11 does not hand a departed member's unacked messages to the group")
def test_shared_subscription_redelivers_unacked_to_another_member(
    broker: BrokerProcess, clients: Clients
) -> None:
    quitter = raw5(clients, broker)
    assert quitter.connect5("quitter").reason == 0  # session ends with the connection
    assert quitter.subscribe5([(SHARED, sub_options(1))]) == [1]
    pub = paho5(clients, broker, "pub")
    sent = [f"job{i}".encode() for i in range(3)]
    for payload in sent:
        pub.publish("v5/jobs", payload, qos=1)
    assert [quitter.get().payload for _ in sent] == sent  # the only member; acks none
    stayer = raw5(clients, broker)
    assert stayer.connect5("stayer").reason == 0
    assert stayer.subscribe5([(SHARED, sub_options(1))]) == [1]
    quitter.close()  # abrupt: its session ends with three messages unacknowledged
    redelivered = []
    for _ in sent:
        msg = stayer.get()
        stayer.send(ack5(PUBACK, msg.packet_id))
        redelivered.append(msg.payload)
    assert sorted(redelivered) == sent
    pub.publish("v5/jobs", b"next", qos=1)
    msg = stayer.get()
    assert msg.payload == b"next"
    stayer.send(ack5(PUBACK, msg.packet_id))


@pytest.mark.mqtt5("shared-subscriptions")
def test_shared_subscription_with_aiomqtt(broker: BrokerProcess) -> None:
    """Two aiomqtt (MQTT 5) members of one group: every message reaches exactly one."""

    async def main() -> None:
        async with aio5(broker, "aio-w1") as w1, aio5(broker, "aio-w2") as w2:
            await w1.subscribe(SHARED, qos=1)
            await w2.subscribe(SHARED, qos=1)
            async with aio5(broker, "aio-pub") as pub:
                for i in range(10):
                    await pub.publish("v5/jobs", f"j{i}".encode(), qos=1)
            got: list[bytes] = []

            async def drain(c: aiomqtt.Client) -> None:
                async for msg in c.messages:
                    got.append(msg.payload)
                    if len(got) == 10:
                        return

            async with asyncio.timeout(TIMEOUT):
                done, pending = await asyncio.wait(
                    [asyncio.create_task(drain(w1)), asyncio.create_task(drain(w2))],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in pending:
                    task.cancel()
            assert sorted(got) == sorted(f"j{i}".encode() for i in range(10))

    asyncio.run(main())


@pytest.mark.mqtt5("shared-subscriptions")
@skip_on_mosquitto("persists only at autosave intervals and shutdown, so SIGKILL loses data")
def test_shared_subscription_of_a_persistent_session_survives_sigkill(
    broker: BrokerProcess, clients: Clients
) -> None:
    member = paho5(clients, broker, "durable-worker", SessionExpiryInterval=300)
    assert member.subscribe(SHARED, 1) == [1]
    member.disconnect()
    pub = paho5(clients, broker, "pub")
    sent = [f"job{i}".encode() for i in range(3)]
    for payload in sent:
        pub.publish("v5/jobs", payload, qos=1)  # acknowledged: stored for the group
    broker.kill()
    broker.start()
    member = paho5_unconnected(clients, broker, "durable-worker")
    assert member.connect(clean_start=False, SessionExpiryInterval=300).session_present
    assert sorted(member.get().payload for _ in sent) == sent

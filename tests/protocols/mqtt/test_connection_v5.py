"""MQTT 5 on the connection state machine: CONNACK capabilities, properties both ways and
into the core, topic aliases from the client, reason codes."""

from __future__ import annotations

import scramp

from broker.queues import Queue
from protocols.mqtt import codec
from protocols.mqtt.frontend import MQTTFrontEnd
from tests.protocols.mqtt.sansio import Client, Client5

PROPS = {
    "content_type": "application/json",
    "response_topic": "replies/me",
    "correlation_data": b"req-1",
    "user_property": [("unit", "C"), ("unit", "F"), ("room", "1")],
    "payload_format_indicator": 1,
}


def test_connack_tells_capabilities_and_assigns_an_id(front: MQTTFrontEnd) -> None:
    connack = Client5(front).connect5("")
    assert connack.reason_code == 0
    props = connack.properties
    assert props["assigned_client_identifier"].startswith("auto-")
    assert "subscription_identifier_available" not in props  # absent: available
    assert "shared_subscription_available" not in props
    assert props["topic_alias_maximum"] > 0


def test_properties_pass_through_to_mqtt5_and_map_into_the_core(front: MQTTFrontEnd) -> None:
    sub5, sub3, pub = Client5(front), Client(front), Client5(front)
    sub5.connect5("s5")
    sub5.subscribe(("t/#", 1))
    sub3.connect("s3")
    sub3.subscribe(("t/#", 1))
    core = front.vhost.declare_queue("core", durable=False)
    front.vhost.bind(core, "amq.topic", "t.#", None)
    pub.connect5("p")
    [puback] = pub.send(codec.Publish("t/x", b"{}", 1, False, False, 3, dict(PROPS)))
    assert puback.reason_code == 0
    [delivery] = sub5.received()
    assert {k: delivery.properties[k] for k in PROPS} == PROPS
    [plain] = sub3.received()
    assert plain.payload == b"{}" and not plain.properties
    message = core.get(None).message
    props = message.properties
    assert (props.content_type, props.reply_to, props.correlation_id) == (
        "application/json",
        "replies.me",
        "req-1",
    )
    assert props.headers == {"unit": "F", "room": "1"} and props.delivery_mode == 2


def test_binary_correlation_data_travels_in_a_header(front: MQTTFrontEnd) -> None:
    pub = Client5(front)
    pub.connect5("p")
    core: Queue = front.vhost.declare_queue("core")
    front.vhost.bind(core, "amq.topic", "#", None)
    pub.send(codec.Publish("a", b"x", 0, False, False, None, {"correlation_data": b"\x00\xff"}))
    props = core.get(None).message.properties
    assert props.correlation_id is None and props.headers == {"x-correlation-data": b"\x00\xff"}


def test_topic_alias_from_the_client(front: MQTTFrontEnd) -> None:
    sub, pub = Client5(front), Client5(front)
    sub.connect5("s")
    sub.subscribe(("long/topic/name", 0))
    pub.connect5("p")
    pub.send(codec.Publish("long/topic/name", b"1", 0, False, False, None, {"topic_alias": 7}))
    pub.send(codec.Publish("", b"2", 0, False, False, None, {"topic_alias": 7}))
    assert [(p.topic, p.payload) for p in sub.received()] == [
        ("long/topic/name", b"1"),
        ("long/topic/name", b"2"),
    ]


def test_unknown_topic_alias_is_a_protocol_error(front: MQTTFrontEnd) -> None:
    pub = Client5(front)
    pub.connect5("p")
    [disconnect] = pub.send(codec.Publish("", b"x", 0, False, False, None, {"topic_alias": 9}))
    assert isinstance(disconnect, codec.Disconnect) and disconnect.reason_code == 0x82
    assert pub.conn.closing


def test_reason_codes_for_refusals(front: MQTTFrontEnd) -> None:
    client = Client5(front)
    client.connect5("c")
    [puback] = client.send(codec.Publish("secret/x", b"no", 1, False, False, 5))
    assert puback.reason_code == 0x87
    assert client.subscribe(("secret/#", 0), ("bad/#/x", 0), ("ok", 1)) == [0x87, 0x8F, 1]
    [unsuback] = client.send(codec.Unsubscribe(2, ["ok", "never"]))
    assert unsuback.reason_codes == [0x00, 0x11]


def test_subscription_identifiers_travel_with_matching_publishes(front: MQTTFrontEnd) -> None:
    sub, pub = Client5(front), Client5(front)
    sub.connect5("s")
    for packet_id, (topic_filter, sub_id) in enumerate([("a/#", 7), ("a/+", 9)], 1):
        subscribe = codec.Subscribe(
            packet_id,
            [(topic_filter, codec.SubscriptionOptions(1))],
            {"subscription_identifier": [sub_id]},
        )
        sub.send(subscribe)
    pub.connect5("p")
    pub.send(codec.Publish("a/b", b"both", 0, False, False, None))
    pub.send(codec.Publish("a/b/c", b"one", 0, False, False, None))
    both, one = sub.received()
    assert sorted(both.properties["subscription_identifier"]) == [7, 9]
    assert one.properties["subscription_identifier"] == [7]


def test_topic_aliases_towards_a_client_that_allows_them(front: MQTTFrontEnd) -> None:
    sub, pub = Client5(front), Client5(front)
    sub.connect5("s", topic_alias_maximum=1)
    sub.subscribe(("t/#", 0))
    pub.connect5("p")
    for topic in ("t/a", "t/a", "t/b", "t/b"):
        pub.send(codec.Publish(topic, b"x", 0, False, False, None))
    packets = sub.received()
    seen = [(p.topic, p.properties.get("topic_alias")) for p in packets]
    assert seen == [("t/a", 1), ("", 1), ("t/b", None), ("t/b", None)]


def test_shared_encodings_never_carry_another_clients_alias(front: MQTTFrontEnd) -> None:
    """A fan-out shares one encoding among subscribers that encode alike, the publisher's
    own packet included; an alias means a topic only per connection, so a subscriber whose
    alias 1 is another topic must not get a packet with alias 1."""
    early, late, pub = Client5(front), Client5(front), Client5(front)
    for client in (early, late):
        client.connect5(client.conn.peer + str(id(client)), topic_alias_maximum=2)
        client.subscribe(("t/#", 0))
    pub.connect5("p")
    pub.send(codec.Publish("t/a", b"0", 0, False, False, None))  # early: alias 1 is t/a
    late.received()
    early.send(codec.Disconnect())
    late.conn.receive(b"")
    pub.send(codec.Publish("t/b", b"1", 0, False, False, None, {"topic_alias": 1}))
    stream = [
        codec.Publish("", bytes([i]), 0, False, False, None, {"topic_alias": 1}) for i in range(3)
    ]
    pub.send(*stream)
    got = late.received()
    assert [(p.topic, p.properties.get("topic_alias")) for p in got] == [
        ("t/b", 2),
        ("", 2),
        ("", 2),
        ("", 2),
    ]
    assert [p.payload for p in got] == [b"1", b"\x00", b"\x01", b"\x02"]


def test_packets_over_the_clients_maximum_are_not_sent(front: MQTTFrontEnd) -> None:
    sub, pub = Client5(front), Client5(front)
    sub.connect5("s", maximum_packet_size=64)
    sub.subscribe(("t", 1))
    pub.connect5("p")
    pub.send(codec.Publish("t", b"x" * 100, 1, False, False, 1))
    pub.send(codec.Publish("t", b"small", 1, False, False, 2))
    assert [p.payload for p in sub.received()] == [b"small"]


def test_disconnect_with_will_publishes_the_will(front: MQTTFrontEnd) -> None:
    watcher, client = Client5(front), Client5(front)
    watcher.connect5("w")
    watcher.subscribe(("wills/#", 0))
    will = codec.Will("wills/c", b"gone", 0, False)
    client.send(codec.Connect("MQTT", 5, True, 60, "c", will=will))
    client.send(codec.Disconnect(0x04))
    client.conn.connection_lost()
    assert [p.payload for p in watcher.received()] == [b"gone"]


def subscribe_with(client: Client5, topic_filter: str, **options: object) -> list:
    packet = codec.Subscribe(1, [(topic_filter, codec.SubscriptionOptions(**options))])
    suback, *rest = client.send(packet)
    assert suback.reason_codes[0] < 0x80
    return rest


def test_no_local_skips_own_messages(front: MQTTFrontEnd) -> None:
    me, other = Client5(front), Client5(front)
    me.connect5("me")
    other.connect5("other")
    subscribe_with(me, "chat", qos=0, no_local=True)
    me.send(codec.Publish("chat", b"mine", 0, False, False, None))
    other.send(codec.Publish("chat", b"theirs", 0, False, False, None))
    assert [p.payload for p in me.received()] == [b"theirs"]


def test_retain_as_published_keeps_the_flag_on_live_deliveries(front: MQTTFrontEnd) -> None:
    keeper, plain, pub = Client5(front), Client5(front), Client5(front)
    for client, name in ((keeper, "k"), (plain, "p"), (pub, "pub")):
        client.connect5(name)
    subscribe_with(keeper, "s/#", qos=0, retain_as_published=True)
    subscribe_with(plain, "s/#", qos=0)
    pub.send(codec.Publish("s/1", b"r", 0, True, False, None))
    [kept] = keeper.received()
    [cleared] = plain.received()
    assert kept.retain and not cleared.retain


def test_retain_handling(front: MQTTFrontEnd) -> None:
    pub = Client5(front)
    pub.connect5("pub")
    pub.send(codec.Publish("r/1", b"kept", 0, True, False, None))
    always, new_only, never = Client5(front), Client5(front), Client5(front)
    for client, name in ((always, "a"), (new_only, "n"), (never, "x")):
        client.connect5(name)
    assert [p.payload for p in subscribe_with(always, "r/#", qos=0, retain_handling=0)] == [b"kept"]
    assert len(subscribe_with(new_only, "r/#", qos=0, retain_handling=1)) == 1
    assert subscribe_with(new_only, "r/#", qos=0, retain_handling=1) == []
    assert subscribe_with(never, "r/#", qos=0, retain_handling=2) == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_session_ends_when_its_expiry_interval_has_passed(front: MQTTFrontEnd) -> None:
    front.clock = clock = Clock()
    client = Client5(front)
    client.connect5("c", session_expiry_interval=10)
    client.subscribe(("t", 1))
    client.send(codec.Disconnect())
    client.conn.connection_lost()
    clock.now += 9
    assert front.expire() == 1010.0
    assert "c" in front.sessions
    clock.now += 1
    assert front.expire() is None
    assert "c" not in front.sessions and "mqtt.session.c" not in front.vhost.queues


def test_a_delayed_will_waits_and_a_resumed_session_cancels_it(front: MQTTFrontEnd) -> None:
    front.clock = clock = Clock()
    watcher = Client5(front)
    watcher.connect5("w")
    watcher.subscribe(("will/#", 0))
    will = codec.Will("will/c", b"gone", 0, False, {"will_delay_interval": 5})
    for resume in (False, True):
        client = Client5(front)
        client.send(
            codec.Connect(
                "MQTT", 5, False, 60, "c", will=will, properties={"session_expiry_interval": 60}
            )
        )
        client.conn.connection_lost()
        clock.now += 4
        front.expire()
        assert watcher.received() == []
        if resume:
            Client5(front).send(codec.Connect("MQTT", 5, False, 60, "c"))
        clock.now += 1
        front.expire()
        payloads = [p.payload for p in watcher.received()]
        assert payloads == ([] if resume else [b"gone"])


def test_disconnect_may_not_set_an_expiry_the_connect_did_not(front: MQTTFrontEnd) -> None:
    client = Client5(front)
    client.connect5("c")
    [disconnect] = client.send(codec.Disconnect(0, {"session_expiry_interval": 30}))
    assert disconnect.reason_code == 0x82


def shared_member(front: MQTTFrontEnd, client_id: str) -> Client5:
    member = Client5(front)
    member.connect5(client_id)
    assert member.subscribe(("$share/g/jobs/#", 1)) == [1]
    return member


def test_shared_subscription_balances_and_hands_on_unacked_work(front: MQTTFrontEnd) -> None:
    first, second = shared_member(front, "a"), shared_member(front, "b")
    pub = Client5(front)
    pub.connect5("p")
    for i in range(4):
        pub.send(codec.Publish("jobs/x", b"%d" % i, 1, False, False, i + 1))
    got_first, got_second = first.received(), second.received()
    assert sorted(p.payload for p in got_first + got_second) == [b"0", b"1", b"2", b"3"]
    assert len(got_first) == len(got_second) == 2
    first.conn.connection_lost()  # leaves with two unacked
    handed_on = second.received()
    assert sorted(p.payload for p in handed_on) == sorted(p.payload for p in got_first)
    assert all(p.qos == 1 for p in handed_on)


def test_last_member_leaving_deletes_the_group_queue(front: MQTTFrontEnd) -> None:
    member = shared_member(front, "a")
    assert "mqtt.shared.g/jobs/#" in front.vhost.queues
    [unsuback] = member.send(codec.Unsubscribe(2, ["$share/g/jobs/#"]))
    assert unsuback.reason_codes == [0]
    assert "mqtt.shared.g/jobs/#" not in front.vhost.queues


def test_malformed_share_names_and_no_local_are_refused(front: MQTTFrontEnd) -> None:
    client = Client5(front)
    client.connect5("c")
    bad = ("$share//t", 0), ("$share/g+/t", 0), ("$share/g", 0), ("$share/g/a/#/b", 0)
    assert client.subscribe(*bad) == [0x8F] * 4
    no_local = codec.Subscribe(2, [("$share/g/t", codec.SubscriptionOptions(0, no_local=True))])
    [disconnect] = client.send(no_local)
    assert disconnect.reason_code == 0x82


def scram_connect(client: Client5, user: str, password: str) -> tuple[object, scramp.ScramClient]:
    """CONNECT with SCRAM-SHA-256 and answer the challenge; returns the broker's last
    packet (CONNACK) and the SCRAM client."""
    scram = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    method = {"authentication_method": "SCRAM-SHA-256"}
    first = {**method, "authentication_data": scram.get_client_first().encode()}
    [challenge] = client.send(codec.Connect("MQTT", 5, True, 60, "scram", properties=first))
    assert (type(challenge), challenge.reason_code) == (codec.Auth, 0x18)
    scram.set_server_first(challenge.properties["authentication_data"].decode())
    final = {**method, "authentication_data": scram.get_client_final().encode()}
    [reply] = client.send(codec.Auth(0x18, final))
    return reply, scram


def test_enhanced_authentication_with_scram_sha_256(front: MQTTFrontEnd) -> None:
    client = Client5(front)
    connack, scram = scram_connect(client, "reader", "pw")
    assert connack.reason_code == 0
    assert connack.properties["authentication_method"] == "SCRAM-SHA-256"
    scram.set_server_final(connack.properties["authentication_data"].decode())  # verifies us
    assert client.conn.username == "reader"


def test_enhanced_authentication_refuses_a_wrong_password_or_unknown_user(
    front: MQTTFrontEnd,
) -> None:
    for user, password in [("reader", "wrong"), ("nobody", "pw")]:
        client = Client5(front)
        connack, _scram = scram_connect(client, user, password)
        assert (type(connack), connack.reason_code) == (codec.Connack, 0x86)
        assert client.conn.closing


def test_reauthentication_as_the_same_user_only(front: MQTTFrontEnd) -> None:
    client = Client5(front)
    assert scram_connect(client, "reader", "pw")[0].reason_code == 0
    for user, expected in [("reader", codec.Auth), ("writer", codec.Disconnect)]:
        scram = scramp.ScramClient(["SCRAM-SHA-256"], user, "pw")
        method = {"authentication_method": "SCRAM-SHA-256"}
        first = {**method, "authentication_data": scram.get_client_first().encode()}
        [challenge] = client.send(codec.Auth(0x19, first))
        scram.set_server_first(challenge.properties["authentication_data"].decode())
        final = {**method, "authentication_data": scram.get_client_final().encode()}
        [reply] = client.send(codec.Auth(0x18, final))
        assert type(reply) is expected
    assert reply.reason_code == 0x87


def test_auth_without_enhanced_authentication_is_a_protocol_error(front: MQTTFrontEnd) -> None:
    client = Client5(front)
    client.connect5("plain")
    [disconnect] = client.send(codec.Auth(0x19, {"authentication_method": "SCRAM-SHA-256"}))
    assert disconnect.reason_code == 0x82


def test_connections_per_user_limit(front: MQTTFrontEnd) -> None:
    front.broker.max_connections_per_user = 1

    def connect(client_id: str) -> tuple[Client5, int]:
        client = Client5(front)
        [connack] = client.send(codec.Connect("MQTT", 5, True, 60, client_id, "reader", b"pw"))
        return client, connack.reason_code

    first, code = connect("one")
    assert code == 0
    assert connect("two")[1] == 0x97  # Quota exceeded
    second, code = connect("one")  # a takeover inherits the place
    assert code == 0 and first.conn.closing
    second.conn.connection_lost()
    assert connect("three")[1] == 0


def test_reason_strings_unless_the_client_asks_for_none(front: MQTTFrontEnd) -> None:
    for problem_information, expected in [(1, "not authorized"), (0, None)]:
        client = Client5(front)
        client.connect5("c", request_problem_information=problem_information)
        [puback] = client.send(codec.Publish("secret/x", b"no", 1, False, False, 5))
        assert puback.reason_code == 0x87
        assert puback.properties.get("reason_string") == expected
    [disconnect] = client.send(codec.Publish("", b"x", 0, False, False, None, {"topic_alias": 9}))
    assert disconnect.properties["reason_string"]  # DISCONNECT always explains itself


def _run(topic: str, bodies: list[bytes]) -> list[codec.Publish]:
    """One publisher's stream: the same topic and user property before each body."""
    user = {"user_property": [("k", "v")]}
    return [codec.Publish(topic, body, 0, False, False, None, dict(user)) for body in bodies]


def test_a_run_reaches_subscribers_whole_and_in_order(front: MQTTFrontEnd) -> None:
    subs = [Client5(front) for _ in range(3)]
    for index, sub in enumerate(subs):
        sub.connect5(f"s{index}", topic_alias_maximum=10)
        sub.subscribe(("run/#", 0))
    pub = Client5(front)
    pub.connect5("p")
    alike = [bytes([i]) * 40 for i in range(30)]  # one size: the run is one join
    mixed = [b"longer" * 30, b"", b"x"]
    pub.send(*_run("run/a", alike))
    pub.send(*_run("run/a", mixed))
    bodies = alike + mixed
    for sub in subs:
        got = sub.received()
        assert [p.payload for p in got] == bodies
        assert all(p.properties["user_property"] == [("k", "v")] for p in got)
        assert got[0].topic == "run/a" and all(p.topic == "" for p in got[1:])  # an alias


def test_a_run_skips_what_exceeds_the_maximum_packet_size(front: MQTTFrontEnd) -> None:
    sub = Client5(front)
    sub.connect5("s", maximum_packet_size=100)
    sub.subscribe(("run/#", 0))
    pub = Client5(front)
    pub.connect5("p")
    bodies = [b"a" * 40, b"b" * 40, b"c" * 200, b"d" * 40, b"e" * 95]
    pub.send(*_run("run/b", bodies))
    assert [p.payload for p in sub.received()] == [b"a" * 40, b"b" * 40, b"d" * 40]


def test_each_subscriber_of_a_run_learns_its_alias_and_keeps_its_limit(
    front: MQTTFrontEnd,
) -> None:
    early, late, small = Client5(front), Client5(front), Client5(front)
    early.connect5("early", topic_alias_maximum=10)
    early.subscribe(("run/#", 0))
    pub = Client5(front)
    pub.connect5("p")
    pub.send(*_run("run/c", [b"first"]))
    assert early.received()[0].topic == "run/c"  # early knows the alias from here on
    late.connect5("late", topic_alias_maximum=10)
    late.subscribe(("run/#", 0))
    small.connect5("small", topic_alias_maximum=10, maximum_packet_size=60)
    small.subscribe(("run/#", 0))
    bodies = [bytes([i]) * 40 for i in range(5)] + [b"z" * 60]
    pub.send(*_run("run/c", bodies))
    got_early, got_late, got_small = early.received(), late.received(), small.received()
    assert [p.topic for p in got_early] == [""] * 6
    assert got_late[0].topic == "run/c" and got_late[0].properties["topic_alias"] == 1
    assert [p.payload for p in got_late] == bodies
    assert [p.payload for p in got_small] == bodies[:5]  # the last is over its limit


def _qos1_run(topic: str, bodies: list[bytes], first_id: int) -> list[codec.Publish]:
    props = {"user_property": [("k", "v")]}
    return [
        codec.Publish(topic, body, 1, False, False, first_id + i, props)
        for i, body in enumerate(bodies)
    ]


def test_a_qos1_backlog_drains_in_rounds_of_the_receive_maximum(front: MQTTFrontEnd) -> None:
    """Deliveries held back by the client's Receive Maximum go out a window's room at a
    time as PUBACKs come back, whole, in order, with distinct packet ids, within its
    Maximum Packet Size."""
    sub = Client5(front)
    sub.connect5("s", receive_maximum=4, topic_alias_maximum=10, maximum_packet_size=100)
    sub.subscribe(("q1/#", 1))
    pub = Client5(front)
    pub.connect5("p")
    bodies = [bytes([i]) * 40 for i in range(9)] + [b"big" * 40] + [b"tail" * 3] * 3
    pub.send(*_qos1_run("q1/a", bodies, 1))
    got: list[codec.Publish] = []
    while window := sub.received():
        assert len(window) <= 4
        assert len({p.packet_id for p in window}) == len(window)
        got += window
        sub.conn.receive(b"".join(codec.encode(codec.Puback(p.packet_id), 5) for p in window))
    assert [p.payload for p in got] == bodies[:9] + bodies[10:]  # the big one is dropped
    assert all(p.qos == 1 and p.properties["user_property"] == [("k", "v")] for p in got)
    assert got[0].topic == "q1/a" and all(p.topic == "" for p in got[1:])
    assert not front.sessions["s"].inflight


def test_interleaved_streams_keep_their_aliases(front: MQTTFrontEnd) -> None:
    """A fan-in interleaves many publishers' streams: each topic's alias is told once and
    every later packet of it, whichever stream came in between, resolves to its topic."""
    sub, plain = Client5(front), Client5(front)
    sub.connect5("s", topic_alias_maximum=2)
    sub.subscribe(("fan/#", 0))
    plain.connect5("plain")
    plain.subscribe(("fan/#", 0))
    pubs = [Client5(front) for _ in range(3)]
    for index, pub in enumerate(pubs):
        pub.connect5(f"p{index}")
    sent = []
    for round_ in range(3):
        for index, pub in enumerate(pubs):
            bodies = [f"{index}.{round_}.{i}".encode() for i in range(4)]
            pub.send(*_run(f"fan/{index}", bodies))
            sent += [(f"fan/{index}", body) for body in bodies]
    aliases: dict[int, str] = {}
    got = []
    for packet in sub.received():
        alias = packet.properties.get("topic_alias")
        if packet.topic:
            if alias:
                aliases[alias] = packet.topic
            got.append((packet.topic, packet.payload))
        else:
            got.append((aliases[alias], packet.payload))
    assert got == sent
    assert sorted(aliases.values()) == ["fan/0", "fan/1"]  # the third topic has none
    assert [(p.topic, p.payload) for p in plain.received()] == sent

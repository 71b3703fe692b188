from pathlib import Path

import pytest

from broker.config import (
    AclRule,
    ConfigError,
    PermissionConfig,
    UserConfig,
    load_config,
    parse_address,
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "broker.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file():
    c = load_config(None)
    assert c.listener("mqtt") == ("127.0.0.1", 1883)
    assert c.listener("amqp") == ("127.0.0.1", 5672)
    assert c.listener("xmpp") == ("127.0.0.1", 5222)
    assert c.listener("http") == ("127.0.0.1", 8080)
    for off in ("mqtts", "amqps", "xmpps", "s2s"):
        assert c.listener(off) is None
    assert c.xmpp.domain == "localhost"
    assert not c.tls_configured
    assert c.auth.allow_anonymous and c.auth.guest_loopback_only
    assert c.mqtt.max_packet_size == 16 * 1024 * 1024
    assert (c.mqtt.max_inflight, c.mqtt.max_queued, c.mqtt.sys_interval) == (20, 1000, 10)
    assert (c.mqtt.max_keepalive, c.mqtt.connect_timeout) == (65535, 10)
    assert c.limits.max_connections_per_user == 0
    assert c.store.fsync and c.store.data_dir == "data"
    assert (c.log.level, c.log.format) == ("info", "text")
    assert c.users == [] and c.acl == []
    with pytest.raises(KeyError):
        c.listener("smtp")


def test_spec_example(tmp_path):
    (tmp_path / "server.pem").write_text("")
    path = write(
        tmp_path,
        """
bind = "0.0.0.0"
[listeners]
mqtt = "127.0.0.1:1883"
amqp = ":0"
xmpp = "[::1]:5222"
http = false
s2s = true
[xmpp]
domain = "example.org"
[tls]
cert = "server.pem"
key = "server.key"
[[users]]
name = "alice"
password = "secret"
tags = ["administrator"]
permissions = { "/" = { configure = ".*", write = ".*", read = ".*" } }
[[acl]]
user = "*"
topic = "devices/%u/#"
action = "publish"
allow = true
[[acl]]
topic = "#"
allow = false
""",
    )
    c = load_config(path)
    assert c.listener("mqtt") == ("127.0.0.1", 1883)
    assert c.listener("amqp") == ("0.0.0.0", 0)
    assert c.listener("xmpp") == ("::1", 5222)
    assert c.listener("http") is None
    assert c.listener("s2s") == ("0.0.0.0", 5269)
    # a certificate opens the TLS-only ports on the bind address
    assert c.listener("mqtts") == ("0.0.0.0", 8883)
    assert c.listener("amqps") == ("0.0.0.0", 5671)
    assert c.listener("xmpps") == ("0.0.0.0", 5223)
    assert c.tls.cert == str(tmp_path / "server.pem")  # relative to the config file
    assert c.tls.key == str(tmp_path / "server.key")
    assert c.xmpp.domain == "example.org"
    assert c.users == [
        UserConfig("alice", "secret", ["administrator"], {"/": PermissionConfig(".*", ".*", ".*")})
    ]
    assert c.acl == [
        AclRule("devices/%u/#", True, user="*", action="publish"),
        AclRule("#", False),
    ]


def test_key_defaults_to_combined_pem(tmp_path):
    c = load_config(write(tmp_path, '[tls]\ncert = "both.pem"\n'))
    assert c.tls.key == c.tls.cert == str(tmp_path / "both.pem")


def test_overrides_deep_merge(tmp_path):
    path = write(tmp_path, '[store]\nfsync = false\ndata_dir = "d"\n[mqtt]\nmax_inflight = 5\n')
    c = load_config(path, {"store": {"data_dir": "/var/lib/broker"}})
    assert c.store.data_dir == "/var/lib/broker"
    assert c.store.fsync is False
    assert c.mqtt.max_inflight == 5
    assert load_config(path).store.data_dir == str(tmp_path / "d")
    assert load_config(None, {"store": {"data_dir": "x"}}).store.data_dir == "x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1", "colour: unknown key"),
        ("[mqtt]\nmax_inflght = 3", "mqtt.max_inflght: unknown key"),
        ("[mqtt]\nmax_inflight = '3'", "mqtt.max_inflight: expected int, got str"),
        ("[mqtt]\nmax_inflight = true", "mqtt.max_inflight: expected int, got bool"),
        ("[mqtt]\nmax_inflight = 0", "mqtt.max_inflight: 0 is out of range"),
        ("[mqtt]\nmax_keepalive = 70000", "mqtt.max_keepalive"),
        ("[auth]\nallow_anonymous = 'no'", "auth.allow_anonymous: expected bool"),
        ("[listeners]\nmqtt = 1883", "listeners.mqtt: expected"),
        ("[listeners]\nmqtt = 'localhost'", "listeners.mqtt: 'localhost' is not host:port"),
        ("[listeners]\nmqtt = ':70000'", "listeners.mqtt: port 70000 out of range"),
        ("[listeners]\nmqtt = '[nope]:1'", "listeners.mqtt: 'nope' is not an IPv6"),
        ("[listeners]\nsmtp = ':25'", "listeners.smtp: unknown key"),
        ("[log]\nlevel = 'loud'", "log.level: 'loud' is not one of"),
        ("[log]\nformat = 'xml'", "log.format"),
        ("[tls]\nkey = 'k.pem'", "tls.key: set without tls.cert"),
        ("[xmpp]\ndomain = ''", "xmpp.domain: must not be empty"),
        ("mqtt = 3", "mqtt: expected a table"),
        ("[[users]]\nname = 'a'", "users[0].password: required"),
        ("[[users]]\nname = 'a'\npassword = 'p'\nrole = 'x'", "users[0].role: unknown key"),
        ("[[users]]\nname = 'a'\npassword = 'p'\ntags = 'admin'", "users[0].tags: expected a list"),
        (
            "[[users]]\nname = 'a'\npassword = 'p'\npermissions = { '/' = { configure = '(' } }",
            "users[0].permissions./.configure: invalid regex",
        ),
        (
            "[[users]]\nname = 'a'\npassword = 'p'\npermissions = { '/' = { configure = '.*' } }",
            "users[0].permissions./.write: required",
        ),
        ("[[acl]]\ntopic = 'a/#'", "acl[0].allow: required"),
        ("[[acl]]\ntopic = 'a/#/b'\nallow = true", "acl[0].topic: 'a/#/b' is not a valid"),
        ("[[acl]]\ntopic = 'a'\nallow = true\naction = 'read'", "acl[0].action"),
        ("[[acl]]\ntopic = 'a'\nallow = 1", "acl[0].allow: expected bool"),
        ("users = 3", "users: expected an array of tables"),
        ("not toml =", "broker.toml"),
    ],
)
def test_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert message in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path / "nope.toml"))


def test_parse_address():
    assert parse_address("example.com:1", "h") == ("example.com", 1)
    assert parse_address(":1", "h") == ("h", 1)
    assert parse_address("[::]:0", "h") == ("::", 0)
    with pytest.raises(ConfigError):
        parse_address("::1:5", "h")

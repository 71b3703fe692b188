"""TOML configuration with embedded defaults.

Every key has a default, so the broker runs with no file at all (SPEC "Running it").
Unknown keys and wrong types are errors that name the key: a typo in a security setting
must not silently fall back to a permissive default.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


Address = tuple[str, int]

# name -> default port; TLS-only listeners open by default only with a certificate.
LISTENER_PORTS: dict[str, int] = {
    "mqtt": 1883,
    "mqtts": 8883,
    "amqp": 5672,
    "amqps": 5671,
    "xmpp": 5222,
    "xmpps": 5223,
    "s2s": 5269,
    "http": 8080,
}
_TLS_LISTENERS = frozenset({"mqtts", "amqps", "xmpps"})
_OFF_BY_DEFAULT = frozenset({"s2s"})
DEFAULT_BIND = "127.0.0.1"


def _limit(default: int, lo: int, hi: int | None = None) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass(frozen=True)
class PermissionConfig:
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class UserConfig:
    name: str
    password: str
    tags: list[str] = field(default_factory=list)
    permissions: dict[str, PermissionConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class AclRule:
    topic: str
    allow: bool
    user: str = "*"
    action: str = "all"  # publish | subscribe | all


@dataclass(frozen=True)
class XmppConfig:
    domain: str = "localhost"
    registration: bool = False  # in-band registration (XEP-0077), over TLS or loopback
    ping_interval: int = _limit(60, 0)  # seconds a stream may be quiet before a ping; 0 = off
    ping_timeout: int = _limit(30, 1)  # seconds a ping may go unanswered before closing
    resume_timeout: int = _limit(300, 1, 86_400)  # seconds a lost stream may be resumed
    pubsub_create_nodes: bool = True  # any local user may create nodes at pubsub.<domain>
    # HTTP file upload (XEP-0363) at upload.<domain>, served by the HTTP listener
    upload: bool = True
    upload_max_file_size: int = _limit(10 * 1024 * 1024, 1)  # bytes
    upload_quota: int = _limit(100 * 1024 * 1024, 0)  # bytes stored per user; 0 = no limit
    upload_expire_after: int = _limit(7 * 86_400, 0)  # seconds a file is kept; 0 = for ever
    upload_url: str = ""  # public base URL of the files; "" = the HTTP listener's address


@dataclass(frozen=True)
class TlsConfig:
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class AuthConfig:
    allow_anonymous: bool = True
    guest_loopback_only: bool = True


@dataclass(frozen=True)
class MqttConfig:
    max_packet_size: int = _limit(16 * 1024 * 1024, 16, 268_435_455)
    max_inflight: int = _limit(20, 1, 65_535)
    max_queued: int = _limit(1000, 0)
    sys_interval: int = _limit(10, 0)  # seconds; 0 disables $SYS
    max_keepalive: int = _limit(65_535, 0, 65_535)
    # MQTT 5 topic aliases a client may set up towards the broker (each holds a topic)
    topic_alias_maximum: int = _limit(16, 0, 65_535)
    connect_timeout: int = _limit(10, 1)  # seconds a connection may stay unauthenticated
    # a steady publisher's next read waits this long so one wake-up reads several packets;
    # 0 reads at once (lowest latency, several times the CPU per message at moderate rates)
    read_coalesce_us: int = _limit(1000, 0, 100_000)


@dataclass(frozen=True)
class LimitsConfig:
    max_connections_per_user: int = _limit(0, 0)  # 0 = unlimited
    amqp_frame_max: int = _limit(131_072, 4096)  # RabbitMQ's default frame_max
    # resource alarms block publishers (AMQP connection.blocked), as RabbitMQ's do:
    # resident memory over this share of RAM, free disk under this many MB; 0 turns off
    memory_high_watermark: float = field(default=0.4, metadata={"min": 0.0, "max": 1.0})
    disk_free_limit_mb: int = _limit(50, 0)
    xmpp_max_stanza_size: int = _limit(262_144, 1024)  # bytes, as Prosody's c2s limit
    xml_max_depth: int = _limit(100, 4)
    ws_max_message_size: int = _limit(16 * 1024 * 1024, 1024)
    ws_auth_timeout: int = _limit(30, 1)  # seconds a /ws client without credentials on the
    # upgrade has to send its first frame


@dataclass(frozen=True)
class StoreConfig:
    fsync: bool = True
    data_dir: str = "data"


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"  # debug | info | warning | error
    format: str = "text"  # text (key=value) | json


@dataclass(frozen=True)
class Config:
    listeners: dict[str, Address | None]
    xmpp: XmppConfig = XmppConfig()
    tls: TlsConfig = TlsConfig()
    auth: AuthConfig = AuthConfig()
    mqtt: MqttConfig = MqttConfig()
    limits: LimitsConfig = LimitsConfig()
    store: StoreConfig = StoreConfig()
    log: LogConfig = LogConfig()
    users: list[UserConfig] = field(default_factory=list)
    acl: list[AclRule] = field(default_factory=list)

    def listener(self, name: str) -> Address | None:
        """The (host, port) a listener binds, or None when it is off."""
        if name not in LISTENER_PORTS:
            raise KeyError(f"unknown listener {name!r}")
        return self.listeners[name]

    @property
    def tls_configured(self) -> bool:
        return self.tls.cert is not None


def load_config(path: str | None, overrides: dict | None = None) -> Config:
    """Read `path` (or nothing) and deep-merge `overrides` (e.g. the CLI's --data-dir).

    Relative paths in the file resolve against the file's directory; overrides and
    defaults resolve against the working directory, as command-line paths do.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from e
        _resolve_paths(raw, Path(path).resolve().parent)
    if overrides:
        raw = _merge(raw, overrides)
    return _build(raw)


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    for section, key in (("tls", "cert"), ("tls", "key"), ("store", "data_dir")):
        value = raw.get(section, {}).get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(value, str):
            raw[section][key] = str(base / value)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(raw: dict[str, Any]) -> Config:
    _reject_unknown(raw, {"bind", "listeners", "users", "acl", *_SECTIONS}, "")
    bind = raw.get("bind", DEFAULT_BIND)
    if not isinstance(bind, str) or not bind:
        raise ConfigError("bind: expected a host address string")
    sections = {name: _section(cls, raw.get(name, {}), name) for name, cls in _SECTIONS.items()}
    tls: TlsConfig = sections["tls"]
    if tls.key is not None and tls.cert is None:
        raise ConfigError("tls.key: set without tls.cert")
    if tls.cert is not None and tls.key is None:
        sections["tls"] = TlsConfig(cert=tls.cert, key=tls.cert)  # combined PEM
    _check_choice(sections["log"].level, ("debug", "info", "warning", "error"), "log.level")
    _check_choice(sections["log"].format, ("text", "json"), "log.format")
    if not sections["xmpp"].domain:
        raise ConfigError("xmpp.domain: must not be empty")
    return Config(
        listeners=_listeners(raw.get("listeners", {}), bind, tls.cert is not None),
        users=[_user(u, i) for i, u in enumerate(_table_list(raw, "users"))],
        acl=[_acl_rule(r, i) for i, r in enumerate(_table_list(raw, "acl"))],
        **sections,
    )


_SECTIONS: dict[str, type] = {
    "xmpp": XmppConfig,
    "tls": TlsConfig,
    "auth": AuthConfig,
    "mqtt": MqttConfig,
    "limits": LimitsConfig,
    "store": StoreConfig,
    "log": LogConfig,
}


def _reject_unknown(raw: dict[str, Any], known: set[str], prefix: str) -> None:
    for key in raw:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key")


def _section(cls: type, raw: Any, name: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table")
    hints = typing.get_type_hints(cls)
    _reject_unknown(raw, set(hints), f"{name}.")
    values = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        key = f"{name}.{f.name}"
        value = _typed(raw[f.name], hints[f.name], key)
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            raise ConfigError(f"{key}: {value} is out of range [{lo}, {hi or 'inf'}]")
        values[f.name] = value
    return cls(**values)


def _typed(value: Any, expected: Any, key: str) -> Any:
    """Check a scalar or list[str] against a dataclass annotation."""
    if isinstance(expected, types.UnionType):  # `str | None`: None is spelt by omission
        (expected,) = [t for t in typing.get_args(expected) if t is not type(None)]
    origin = typing.get_origin(expected)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings")
        return list(value)
    # bool is an int subclass: `port = true` must not pass as 1.
    if type(value) is not expected:
        raise ConfigError(f"{key}: expected {expected.__name__}, got {type(value).__name__}")
    return value


def _check_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")


def _listeners(raw: Any, bind: str, have_cert: bool) -> dict[str, Address | None]:
    if not isinstance(raw, dict):
        raise ConfigError("listeners: expected a table")
    _reject_unknown(raw, set(LISTENER_PORTS), "listeners.")
    out: dict[str, Address | None] = {}
    for name, port in LISTENER_PORTS.items():
        value = raw.get(name)
        if value is None:
            on = name not in _OFF_BY_DEFAULT and (name not in _TLS_LISTENERS or have_cert)
            out[name] = (bind, port) if on else None
        elif value is False:
            out[name] = None
        elif value is True:
            out[name] = (bind, port)
        elif isinstance(value, str):
            out[name] = parse_address(value, bind, f"listeners.{name}")
        else:
            raise ConfigError(f'listeners.{name}: expected "host:port", true or false')
    return out


_ADDRESS = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})$")


def parse_address(text: str, default_host: str, key: str = "address") -> Address:
    """Parse "host:port", ":port" (default host) or "[v6]:port" into (host, port)."""
    m = _ADDRESS.match(text)
    if m is None:
        raise ConfigError(f"{key}: {text!r} is not host:port")
    port = int(m["port"])
    if port > 65_535:
        raise ConfigError(f"{key}: port {port} out of range")
    if m["v6"] is not None:
        try:
            ipaddress.IPv6Address(m["v6"])
        except ValueError as e:
            raise ConfigError(f"{key}: {m['v6']!r} is not an IPv6 address") from e
        return (m["v6"], port)
    return (m["host"] or default_host, port)


def _table_list(raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = raw.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{name}: expected an array of tables ([[{name}]])")
    return value


def _user(raw: dict[str, Any], i: int) -> UserConfig:
    key = f"users[{i}]"
    _reject_unknown(raw, {"name", "password", "tags", "permissions"}, f"{key}.")
    for required in ("name", "password"):
        if required not in raw:
            raise ConfigError(f"{key}.{required}: required")
    name = _typed(raw["name"], str, f"{key}.name")
    if not name:
        raise ConfigError(f"{key}.name: must not be empty")
    perms_raw = raw.get("permissions", {})
    if not isinstance(perms_raw, dict):
        raise ConfigError(f"{key}.permissions: expected a table of vhost = {{...}}")
    perms = {}
    for vhost, p in perms_raw.items():
        pkey = f"{key}.permissions.{vhost}"
        if not isinstance(p, dict):
            raise ConfigError(f"{pkey}: expected {{ configure, write, read }}")
        _reject_unknown(p, {"configure", "write", "read"}, f"{pkey}.")
        regexes = {}
        for kind in ("configure", "write", "read"):
            if kind not in p:
                raise ConfigError(f"{pkey}.{kind}: required")
            regexes[kind] = _regex(p[kind], f"{pkey}.{kind}")
        perms[vhost] = PermissionConfig(**regexes)
    return UserConfig(
        name=name,
        password=_typed(raw["password"], str, f"{key}.password"),
        tags=_typed(raw.get("tags", []), list[str], f"{key}.tags"),
        permissions=perms,
    )


def _regex(value: Any, key: str) -> str:
    _typed(value, str, key)
    try:
        re.compile(value)
    except re.error as e:
        raise ConfigError(f"{key}: invalid regex {value!r}: {e}") from e
    return value


def _acl_rule(raw: dict[str, Any], i: int) -> AclRule:
    key = f"acl[{i}]"
    hints = typing.get_type_hints(AclRule)
    _reject_unknown(raw, set(hints), f"{key}.")
    values = {}
    for name, expected in hints.items():
        if name in raw:
            values[name] = _typed(raw[name], expected, f"{key}.{name}")
    for required in ("topic", "allow"):
        if required not in values:
            raise ConfigError(f"{key}.{required}: required")
    rule = AclRule(**values)
    _check_choice(rule.action, ("publish", "subscribe", "all"), f"{key}.action")
    if not valid_filter(rule.topic):
        raise ConfigError(f"{key}.topic: {rule.topic!r} is not a valid MQTT topic filter")
    if not rule.user:
        raise ConfigError(f"{key}.user: must not be empty")
    return rule


def valid_filter(topic_filter: str) -> bool:
    """MQTT filter syntax: `#` only as the whole last level, `+` only as a whole level."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True

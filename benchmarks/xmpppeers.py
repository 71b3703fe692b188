"""Throwaway Prosody and ejabberd servers for one scenario: config, accounts, command.

Each runs in the foreground as the current user (root in the sandbox: Prosody is told
``run_as_root``, ejabberd runs from ``erl`` directly rather than through ``ejabberdctl``,
which would switch to the ``ejabberd`` user), with every file in a temporary directory, a
c2s listener on one loopback port and nothing else listening, so it touches no
system-wide instance.  ejabberd runs without Erlang distribution, so no ``epmd`` either.

Both load their packaged module sets (Debian's ``prosody.cfg.lua`` and ``ejabberd.yml``)
with three changes for a loopback benchmark, matching what ours does by default: no
traffic shaping (Prosody's ``mod_limits`` at 10 kB/s, ejabberd's ``c2s_shaper``), STARTTLS
offered but not required, and SASL PLAIN allowed without TLS.  Neither set archives
one-to-one chats; ``archive`` adds ``mod_mam`` keeping every message, as ours does.
Passwords are stored in plain, so a login costs no key derivation.  Accounts are created
before the listener is used: Prosody's as account files of its internal storage,
ejabberd's with ``ejabberd_auth:try_register`` evaluated in the node once it has
started, which then prints :data:`EJABBERD_READY`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

PROSODY = Path(shutil.which("prosody") or "/usr/bin/prosody")
ERL = Path(shutil.which("erl") or "/usr/bin/erl")
EJABBERD_LIBS = Path("/usr/lib/x86_64-linux-gnu")
EJABBERD_READY = b"bench accounts ready"

#: Debian's list without limits (shaping), posix and admin_shell (daemon bits)
PROSODY_MODULES = (
    "disco roster saslauth tls blocklist bookmarks carbons dialback pep private smacks "
    "vcard4 vcard_legacy csi_simple invites invites_adhoc invites_register ping register "
    "time uptime version admin_adhoc"
)

PROSODY_CONFIG = """\
run_as_root = true
pidfile = "{tmp}/prosody.pid"
data_path = "{tmp}/data"
plugin_paths = {{}}
modules_enabled = {{ {modules} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
log = {{ info = "*console" }}
certificates = "{tmp}/certs"
VirtualHost "{domain}"
Component "conference.{domain}" "muc"
"""

EJABBERD_MODULES = """\
  mod_adhoc: {}
  mod_admin_extra: {}
  mod_announce: {access: announce}
  mod_avatar: {}
  mod_blocking: {}
  mod_bosh: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_client_state: {}
  mod_configure: {}
  mod_disco: {}
  mod_fail2ban: {}
  mod_http_api: {}
  mod_last: {}
  mod_mqtt: {}
  mod_muc:
    access: [allow]
    access_admin: [{allow: admin}]
    access_create: muc_create
    access_persistent: muc_create
    access_mam: [allow]
    default_room_options: {mam: true}
  mod_muc_admin: {}
  mod_offline: {access_max_user_messages: max_user_offline_messages}
  mod_ping: {}
  mod_pres_counter: {count: 5, interval: 60}
  mod_privacy: {}
  mod_private: {}
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins: [flat, pep]
  mod_push: {}
  mod_push_keepalive: {}
  mod_roster: {versioning: true}
  mod_s2s_dialback: {}
  mod_shared_roster: {}
  mod_sic: {}
  mod_stream_mgmt: {resend_on_timeout: if_offline}
  mod_stun_disco: {}
  mod_vcard: {search: false}
  mod_vcard_xupdate: {}
  mod_version: {}
"""  # Debian's list and options
EJABBERD_MAM = "  mod_mam: {default: always}\n"

EJABBERD_CONFIG = """\
hosts: ["{domain}"]
loglevel: info
log_rotate_count: 0
certfiles: ["{cert}", "{key}"]
listen:
  - port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    starttls: true
    starttls_required: false
    backlog: 1024
auth_method: [internal]
auth_password_format: plain
acl:
  admin: {{user: []}}
  local: {{user_regexp: ""}}
  loopback: {{ip: [127.0.0.0/8, "::1/128"]}}
access_rules:
  local: {{allow: local}}
  c2s: {{deny: blocked, allow: all}}
  announce: {{allow: admin}}
  configure: {{allow: admin}}
  muc_create: {{allow: local}}
  pubsub_createnode: {{allow: local}}
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: {{5000: admin, 100: all}}
  c2s_shaper: none
modules:
{modules}"""

_REGISTER = (
    '{{ok, B}} = file:read_file("{accounts}"), '
    '[ok = ejabberd_auth:try_register(U, <<"{domain}">>, <<"{password}">>) '
    '|| U <- binary:split(B, <<"\\n">>, [global, trim_all])], '
    'io:format("' + EJABBERD_READY.decode() + '~n").'
)


def prosody_installed() -> bool:
    return PROSODY.exists()


def ejabberd_installed() -> bool:
    return ERL.exists() and any(EJABBERD_LIBS.glob("ejabberd-*"))


def _prosody_encode(name: str) -> str:
    """A path component as Prosody's datamanager writes it (``%W`` hex-escaped)."""
    return re.sub(r"[^A-Za-z0-9]", lambda c: f"%{ord(c.group()):02x}", name)


def prosody(
    tmp: Path,
    port: int,
    domain: str,
    accounts: list[str],
    password: str,
    cert: Path,
    key: Path,
    archive: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """Write Prosody's config, certificate and account files into ``tmp``; its command
    line and environment additions.  With ``archive``, mod_mam keeps every one-to-one
    message (its default policy)."""
    store = tmp / "data" / _prosody_encode(domain) / "accounts"
    store.mkdir(parents=True)
    for name in accounts:
        account = store / f"{_prosody_encode(name)}.dat"
        account.write_text(f'return {{ ["password"] = "{password}"; }};\n')
    (tmp / "certs").mkdir()
    shutil.copy(cert, tmp / "certs" / f"{domain}.crt")
    shutil.copy(key, tmp / "certs" / f"{domain}.key")
    modules = "; ".join(f'"{m}"' for m in PROSODY_MODULES.split() + ["mam"] * archive)
    config = tmp / "prosody.cfg.lua"
    config.write_text(PROSODY_CONFIG.format(tmp=tmp, modules=modules, port=port, domain=domain))
    return [str(PROSODY), "-F", "--config", str(config)], {"HOME": str(tmp)}


def prosody_version() -> str | None:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "prosody"], capture_output=True, text=True
    )
    return f"Prosody {out.stdout}" if out.returncode == 0 else None


def ejabberd(
    tmp: Path,
    port: int,
    domain: str,
    accounts: list[str],
    password: str,
    cert: Path,
    key: Path,
    archive: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """Write ejabberd's config and account list into ``tmp``; its command line and
    environment additions.  With ``archive``, mod_mam keeps every one-to-one message."""
    config = tmp / "ejabberd.yml"
    modules = EJABBERD_MODULES + (EJABBERD_MAM if archive else "")
    config.write_text(
        EJABBERD_CONFIG.format(domain=domain, cert=cert, key=key, port=port, modules=modules)
    )
    listing = tmp / "accounts"
    listing.write_text("".join(f"{name}\n" for name in accounts))
    (tmp / "spool").mkdir()
    register = _REGISTER.format(accounts=listing, domain=domain, password=password)
    cmd = [str(ERL), "-noinput", "+K", "true", "+P", "250000"]
    cmd += ["-mnesia", "dir", f'"{tmp / "spool"}"', "-s", "ejabberd", "-eval", register]
    env = {
        "HOME": str(tmp),
        "EJABBERD_CONFIG_PATH": str(config),
        "EJABBERD_LOG_PATH": str(tmp / "ejabberd.log"),
        "ERL_LIBS": str(EJABBERD_LIBS),
        "ERL_MAX_PORTS": "65536",
        "ERL_CRASH_DUMP": str(tmp / "erl_crash.dump"),
    }
    return cmd, env


def ejabberd_version() -> str | None:
    found = sorted(EJABBERD_LIBS.glob("ejabberd-*"))
    return f"ejabberd {found[-1].name.removeprefix('ejabberd-')}" if found else None

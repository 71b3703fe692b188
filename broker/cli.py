"""Command line: ``broker serve``, user and permission management, quick pub/sub tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from broker.auth import UserDB
from broker.config import ConfigError, load_config
from broker.store.sqlite import SqliteStore


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    try:
        args.func(args)
    except ConfigError as exc:
        sys.exit(f"broker: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the broker")
    _common(serve)
    serve.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="NAME=ADDRESS",
        help="override a listener, e.g. mqtt=0.0.0.0:1883 or amqp=off (repeatable)",
    )
    serve.set_defaults(func=_serve)

    user = commands.add_parser("user", help="manage users").add_subparsers(metavar="ACTION")
    add = user.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--password", required=True)
    add.add_argument("--tags", default="", help="comma-separated, e.g. administrator")
    add.set_defaults(func=_users(lambda db, a: db.add(a.name, a.password, _tags(a.tags))))
    delete = user.add_parser("del", help="delete a user")
    delete.add_argument("name")
    delete.set_defaults(func=_users(lambda db, a: db.delete(a.name)))
    passwd = user.add_parser("passwd", help="change a password")
    passwd.add_argument("name")
    passwd.add_argument("--password", required=True)
    passwd.set_defaults(func=_users(lambda db, a: db.set_password(a.name, a.password)))
    listing = user.add_parser("list", help="list users")
    listing.set_defaults(func=_users(_list_users))
    for sub in (add, delete, passwd, listing):
        _common(sub)

    perms = commands.add_parser("perms", help="manage permissions").add_subparsers(metavar="ACTION")
    set_perms = perms.add_parser("set", help="set a user's permissions on a vhost")
    for name in ("user", "vhost", "configure", "write", "read"):
        set_perms.add_argument(name)
    set_perms.set_defaults(
        func=_users(lambda db, a: db.set_permissions(a.user, a.vhost, a.configure, a.write, a.read))
    )
    _common(set_perms)

    pub = commands.add_parser("pub", help="publish one MQTT message")
    pub.add_argument("topic")
    pub.add_argument("message")
    pub.add_argument("-q", "--qos", type=int, choices=(0, 1, 2), default=0)
    pub.add_argument("-r", "--retain", action="store_true")
    _client(pub)
    pub.set_defaults(func=_pub)

    sub = commands.add_parser("sub", help="print MQTT messages matching a filter")
    sub.add_argument("filter")
    sub.add_argument("-q", "--qos", type=int, choices=(0, 1, 2), default=0)
    sub.add_argument("-C", "--count", type=int, default=0, help="exit after N messages")
    sub.add_argument("-v", "--verbose", action="store_true", help="print topics too")
    _client(sub)
    sub.set_defaults(func=_sub)

    status = commands.add_parser("status", help="overview from the management API")
    status.add_argument("--url", default="http://127.0.0.1:8080", help="the HTTP listener")
    status.add_argument("--user", default="guest")
    status.add_argument("--password", default="guest")
    status.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    status.set_defaults(func=_status)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file")
    parser.add_argument("--data-dir", help="where durable state lives (default ./data)")


def _client(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=1883)
    parser.add_argument("-u", "--username")
    parser.add_argument("-P", "--password")
    parser.add_argument("-i", "--client-id", default="")
    parser.add_argument(
        "-k", "--keepalive", type=int, default=60, help="MQTT keepalive in seconds (0: none)"
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--cafile", help="CA certificate to verify the server with")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")


def _config(args: argparse.Namespace):
    overrides: dict = {"store": {"data_dir": args.data_dir}} if args.data_dir else {}
    listeners = {}
    for item in getattr(args, "listen", []):
        name, sep, address = item.partition("=")
        if not sep:
            raise ConfigError(f"--listen {item!r}: expected NAME=ADDRESS")
        listeners[name] = False if address == "off" else address
    if listeners:
        overrides["listeners"] = listeners
    return load_config(args.config, overrides or None)


def _serve(args: argparse.Namespace) -> None:
    from broker.runtime import serve

    serve(_config(args), reload=lambda: _config(args))


def _tags(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _list_users(db: UserDB, args: argparse.Namespace) -> None:
    for user in db.list():
        perms = " ".join(
            f"{vhost}:{p.configure}/{p.write}/{p.read}" for vhost, p in user.permissions.items()
        )
        print(f"{user.name}\t[{','.join(user.tags)}]\t{perms}")


def _users(action: Callable[[UserDB, argparse.Namespace], object]) -> Callable:
    """Run a user-database change against the data dir's store (offline; a running
    broker sees it after restart)."""

    def run(args: argparse.Namespace) -> None:
        config = _config(args)

        async def change() -> None:
            store = SqliteStore(Path(config.store.data_dir), shared=True)
            Path(config.store.data_dir).mkdir(parents=True, exist_ok=True)
            snapshot = await store.open()
            db = UserDB()
            db.load(snapshot.users)
            db.on_change = store.put_user
            db.ensure_default_users()
            try:
                action(db, args)
            except (KeyError, ValueError) as exc:
                sys.exit(f"broker: {exc}")
            finally:
                await store.sync()
                await store.close()

        trio.run(change)

    return run


def _pub(args: argparse.Namespace) -> None:
    from broker.clitools import publish

    publish(args)


def _sub(args: argparse.Namespace) -> None:
    from broker.clitools import subscribe

    subscribe(args)


def _status(args: argparse.Namespace) -> None:
    from broker.status import status

    status(args)

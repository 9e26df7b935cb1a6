"""codegraph-admin: offline tasks on the data directory (the service must be stopped).

Exit codes: 0 done, 1 the check found problems, 2 bad usage or configuration,
3 the data directory is in use by a running service.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from codegraph import maintenance, recovery
from codegraph.cli import base_parser, settings_or_none
from codegraph.engine import Engine
from codegraph.errors import CodeGraphError, DatabaseInUse
from codegraph.logs import setup_logging
from codegraph.replication.stream import StreamMissing, StreamSpec, ensure_stream
from codegraph.settings import Settings


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _check_config(settings: Settings, args: argparse.Namespace) -> int:
    db = settings.database
    print(
        f"{args.config}: OK (profile {db.profile}, database {db.path}, "
        f"port {settings.server.port}, TLS {'on' if settings.server.tls else 'off'})"
    )
    return 0


def _stats(engine: Engine, args: argparse.Namespace) -> int:
    _print({"stats": engine.stats(), "rocksdb": maintenance.rocksdb_stats(engine)})
    return 0


def _compact(engine: Engine, args: argparse.Namespace) -> int:
    _print(maintenance.compact(engine))
    return 0


def _backup(engine: Engine, args: argparse.Namespace) -> int:
    engine.indexer.catch_up(progress=_progress)
    manifest = recovery.create_backup(engine, kind="offline")
    manifest.pop("files")
    _print(manifest)
    return 0


def _backups(engine: Engine, args: argparse.Namespace) -> int:
    _print(recovery.list_backups(engine))
    return 0


def _restore(engine: Engine, args: argparse.Namespace) -> int:
    _print(recovery.restore(engine, args.backup_id))
    return 0


def _verify(engine: Engine, args: argparse.Namespace) -> int:
    if args.backup:
        manifest = engine.backups.verify(args.backup)
        print(f"backup {args.backup}: all {len(manifest['files'])} files match the manifest")
        return 0
    engine.indexer.catch_up(progress=_progress)
    report = maintenance.check_integrity(engine)
    _print(report)
    return 0 if report["status"] == "ok" else 1


def _stream(settings: Settings, args: argparse.Namespace) -> int:
    """Create or reconcile the fleet's stream (the service may be running)."""
    if settings.replication.mode != "jetstream":
        print("codegraph-admin stream: replication.mode is not jetstream", file=sys.stderr)
        return 2
    spec = StreamSpec(args.replicas, args.max_age_seconds, args.max_bytes, args.max_msg_size)
    try:
        _print(asyncio.run(ensure_stream(settings, spec, check=args.check, create=args.create)))
    except StreamMissing as error:
        print(f"codegraph-admin stream: {error}", file=sys.stderr)
        return 4
    except Exception as error:  # unreachable, no quorum, refused: say which
        print(f"codegraph-admin stream: {error or type(error).__name__}", file=sys.stderr)
        return 1
    return 0


def _forget_stream(engine: Engine, args: argparse.Namespace) -> int:
    """This host's state becomes the start of the stream as it is now: after the stream
    was lost or created again (docs/replication.md), on every host whose state the fleet
    keeps. It records no stream and no applied entry, so the host applies the stream from
    its first entry on top of its data; its operation log, numbered by the old stream's
    sequences, is set aside (point-in-time recovery starts again from here)."""
    store = engine.store
    before = {"applied_seq": store.counters["applied_seq"], **store.position}
    if store.stopped:  # (the stop this procedure answers: "created again")
        before["stopped"] = store.clear_stop()
    store.forget_position()
    engine.oplog.close()
    aside = Path(engine.settings.oplog.path)
    kept = aside.with_name(f"{aside.name}.before-{time.strftime('%Y%m%dT%H%M%S')}")
    if aside.is_dir():
        aside.rename(kept)
    _print({"forgotten": before, "oplog_kept_at": str(kept)})
    return 0


def _clear_stop(engine: Engine, args: argparse.Namespace) -> int:
    """Let a host that stopped applying the log go on (the service stopped): only once
    its state is known good again, docs/replication.md, 'A host stopped applying the log'.
    A restore or a bootstrap clears the stop itself."""
    reason = engine.store.clear_stop()
    _print({"cleared": bool(reason), "stopped_for": reason or None})
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


COMMANDS: dict[str, tuple[Callable[..., int], str]] = {
    "check-config": (_check_config, "validate the configuration file and exit"),
    "stats": (_stats, "print database statistics"),
    "compact": (_compact, "full compaction of every column family"),
    "backup": (_backup, "take a backup (checkpoint, vector index, manifest)"),
    "backups": (_backups, "list the backups"),
    "restore": (_restore, "restore a backup (verified first; the replaced data is kept aside)"),
    "verify": (_verify, "integrity check of the database, or --backup ID to verify a backup"),
    "stream": (_stream, "create the fleet's replicated stream, or reconcile its configuration"),
    "forget-stream": (
        _forget_stream,
        "make this host's state the start of the stream as it is now (after it was lost)",
    ),
    "clear-stop": (_clear_stop, "let a host that stopped applying the log go on"),
}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("codegraph-admin", __doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name == "check-config":
            sub.add_argument("file", nargs="?", help="check this file instead of --config")
        if name == "restore":
            sub.add_argument("backup_id")
        if name == "verify":
            sub.add_argument("--backup", metavar="ID", help="verify this backup's checksums")
        if name == "stream":
            sub.add_argument("--replicas", type=int, required=True)
            sub.add_argument("--max-age-seconds", type=float, required=True)
            sub.add_argument("--max-bytes", type=int, required=True)
            sub.add_argument("--max-msg-size", type=int, required=True)
            mode = sub.add_mutually_exclusive_group(required=True)
            mode.add_argument("--check", action="store_true", help="say what would change")
            mode.add_argument("--apply", action="store_true", help="create or change it")
            create = sub.add_mutually_exclusive_group()
            create.add_argument(
                "--create", action="store_true", help="create it if missing (a new fleet)"
            )
            create.add_argument(
                "--no-create", dest="create", action="store_false", help="(the default)"
            )
    args = parser.parse_args(argv)
    if args.command == "check-config" and args.file:
        args.config = args.file
    settings = settings_or_none("codegraph-admin", args.config)
    if settings is None:
        return 2
    handler = COMMANDS[args.command][0]
    if args.command in ("check-config", "stream"):  # neither opens the data directory
        return handler(settings, args)
    setup_logging("warning")
    try:
        engine = Engine(settings, background=False)
    except DatabaseInUse as error:
        print(f"codegraph-admin: {error}", file=sys.stderr)
        return 3
    try:
        return handler(engine, args)
    except CodeGraphError as error:
        print(f"codegraph-admin {args.command}: {error}", file=sys.stderr)
        return 1
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())

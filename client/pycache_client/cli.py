"""``pycache-cli``: one cache command from the shell.

::

    pycache-cli [-s HOST:PORT] get KEY
    pycache-cli [-s HOST:PORT] set KEY VALUE [--ttl N]
    pycache-cli [-s HOST:PORT] delete KEY
    pycache-cli [-s HOST:PORT] incr KEY [N]      # also decr
    pycache-cli [-s HOST:PORT] stats [GROUP]
    pycache-cli [-s HOST:PORT] flush

Exit status: 0 success; 1 a miss where the miss is the answer (get, delete, incr/decr of a
missing key); 2 usage errors (bad arguments, invalid key or TTL); 3 the server could not be
reached or failed. Errors are one line on stderr, never a traceback. ``get`` prints the stored
bytes as they are, followed by a newline; ``set`` stores VALUE as text. The server defaults to
``$PYCACHE_SERVER`` or ``127.0.0.1:11211``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .client import Client
from .errors import CacheClientError, CacheError
from .serde import JsonSerde, RawSerde

EXIT_OK, EXIT_MISS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
PROG = "pycache-cli"


class _UsageError(Exception):
    """A usage problem argparse found; carries its one-line message."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block then exits; we want one line and our exit code.
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (exposed for tests and documentation)."""
    parser = _Parser(prog=PROG, description="Run one command against a pycache-d or memcached server.")
    parser.add_argument(
        "-s",
        "--server",
        default=os.environ.get("PYCACHE_SERVER", "127.0.0.1:11211"),
        help="host:port or unix:/path (default: $PYCACHE_SERVER or 127.0.0.1:11211)",
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request (default: 2)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    p = sub.add_parser("get", help="print a value (exit 1 if missing)")
    p.add_argument("key")
    p = sub.add_parser("set", help="store a value")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--ttl", type=int, default=0, help="seconds to live, 0 for no expiry")
    p = sub.add_parser("delete", help="delete a key (exit 1 if missing)")
    p.add_argument("key")
    for verb in ("incr", "decr"):
        p = sub.add_parser(verb, help=f"{verb}ement a decimal value, print the result (exit 1 if missing)")
        p.add_argument("key")
        p.add_argument("delta", nargs="?", type=int, default=1)
    p = sub.add_parser("stats", help="print server statistics as a table")
    p.add_argument("group", nargs="?", help="items, slabs, settings, ...")
    sub.add_parser("flush", help="invalidate every item")
    return parser


def format_table(stats: dict[str, dict[str, str]]) -> str:
    """Return ``{server: {stat: value}}`` as an aligned table, one column per server."""
    servers = list(stats)
    names = sorted({name for values in stats.values() for name in values})
    rows = [["stat", *servers]] + [[n, *(stats[s].get(n, "") for s in servers)] for n in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        # Names left-aligned, values right-aligned so numbers line up by their digits.
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; return the exit status. Raises CacheError on failures."""
    raw = args.command == "get"
    with Client(args.server, timeout=args.timeout, connect_timeout=args.timeout,
                serde=RawSerde() if raw else JsonSerde()) as client:  # fmt: skip
        if args.command == "get":
            value = client.get(args.key)
            if value is None:
                print(f"{PROG}: not found: {args.key}", file=sys.stderr)
                return EXIT_MISS
            sys.stdout.buffer.write(value + b"\n")
        elif args.command == "set":
            client.set(args.key, args.value, ttl=args.ttl)
        elif args.command == "delete":
            if not client.delete(args.key):
                print(f"{PROG}: not found: {args.key}", file=sys.stderr)
                return EXIT_MISS
        elif args.command in ("incr", "decr"):
            if args.delta < 0:
                raise _UsageError(f"{args.command} amount must not be negative")
            result = (client.incr if args.command == "incr" else client.decr)(args.key, args.delta)
            if result is None:
                print(f"{PROG}: not found: {args.key}", file=sys.stderr)
                return EXIT_MISS
            print(result)
        elif args.command == "stats":
            print(format_table(client.stats(args.group)))
        elif args.command == "flush":
            client.flush_all()
            print("OK")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pycache-cli``; return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc} (see {PROG} --help)", file=sys.stderr)
        return EXIT_USAGE
    except (CacheClientError, ValueError) as exc:
        # Raised before sending (key, ttl, delta): a usage error. A CLIENT_ERROR *reply* (e.g.
        # incr on a non-numeric value) is a command that failed.
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, CacheClientError) and exc.wire else EXIT_USAGE
    except CacheError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # NOTE: `pycache-cli stats | head` closes stdout early; that is not an error to report.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

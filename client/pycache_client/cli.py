"""``pycache-cli``: one cache command from the shell.

::

    pycache-cli [-s HOST:PORT] get KEY [-o FILE]
    pycache-cli [-s HOST:PORT] set KEY VALUE [--ttl N]    # VALUE "-": stdin, bytes as they come
    pycache-cli [-s HOST:PORT] set KEY --file FILE        # the file's bytes, binary included
    pycache-cli [-s HOST:PORT] delete KEY
    pycache-cli [-s HOST:PORT] incr KEY [N]      # also decr
    pycache-cli [-s HOST:PORT] stats [GROUP]
    pycache-cli [-s HOST:PORT] flush

The options (``-s``, ``--timeout``) go anywhere on the line, before or after the command.

Exit status: 0 success; 1 a miss where the miss is the answer (get, delete, incr/decr of a
missing key); 2 usage errors (bad arguments, invalid key or TTL, unreadable file); 3 the server
could not be reached or failed. Errors are one line on stderr, never a traceback. ``get`` prints
the stored bytes as they are, followed by a newline (with ``-o FILE``: exactly the stored bytes,
no newline); ``set KEY VALUE`` stores VALUE as text, ``set KEY -`` and ``--file`` store bytes
(flags 0). The server defaults to ``$PYCACHE_SERVER`` or ``127.0.0.1:11211``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
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


def _common(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every position accepts; ``defaults`` only on the top-level parser.

    NOTE: a subcommand's copy has no defaults (SUPPRESS), so ``-s`` given before the command is
    not reset by the subcommand's parser: argparse fills the namespace top-level first.
    """
    suppress = argparse.SUPPRESS
    parser.add_argument(
        "-s",
        "--server",
        default=os.environ.get("PYCACHE_SERVER", "127.0.0.1:11211") if defaults else suppress,
        help="host:port or unix:/path (default: $PYCACHE_SERVER or 127.0.0.1:11211)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=2.0 if defaults else suppress,
        help="seconds per request (default: 2)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (exposed for tests, the man page and documentation)."""
    parser = _Parser(prog=PROG, description="Run one command against a pycache-d or memcached server.")
    _common(parser, defaults=True)
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    common = _Parser(add_help=False)
    _common(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    p = sub.add_parser("get", parents=[common], help="print a value (exit 1 if missing)")
    p.add_argument("key")
    p.add_argument("-o", "--output", metavar="FILE", help="write the value's bytes to FILE instead")
    p = sub.add_parser("set", parents=[common], help="store a value (VALUE - reads stdin)")
    p.add_argument("key")
    p.add_argument("value", nargs="?", help='the value as text; "-" reads the bytes from stdin')
    p.add_argument("-f", "--file", metavar="FILE", help="store the bytes of FILE (binary included)")
    p.add_argument("--ttl", type=int, default=0, help="seconds to live, 0 for no expiry")
    p = sub.add_parser("delete", parents=[common], help="delete a key (exit 1 if missing)")
    p.add_argument("key")
    for verb in ("incr", "decr"):
        p = sub.add_parser(
            verb, parents=[common], help=f"{verb}ement a decimal value, print the result (exit 1 if missing)"
        )
        p.add_argument("key")
        p.add_argument("delta", nargs="?", type=int, default=1)
    p = sub.add_parser("stats", parents=[common], help="print server statistics as a table")
    p.add_argument("group", nargs="?", help="items, slabs, settings, ...")
    sub.add_parser("flush", parents=[common], help="invalidate every item")
    return parser


def _value(args: argparse.Namespace) -> str | bytes:
    """The value ``set`` stores: VALUE as text, or the bytes of stdin (``-``) or ``--file``."""
    if (args.value is None) == (args.file is None):
        raise _UsageError("set needs exactly one of VALUE, - (stdin) or --file FILE")
    if args.file is not None:
        try:
            with open(args.file, "rb") as f:
                return f.read()
        except OSError as exc:
            raise _UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if args.value == "-":
        return sys.stdin.buffer.read()
    return str(args.value)


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
            if args.output is not None:
                try:
                    with open(args.output, "wb") as f:
                        f.write(value)
                except OSError as exc:
                    raise _UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            else:
                sys.stdout.buffer.write(value + b"\n")
        elif args.command == "set":
            client.set(args.key, _value(args), ttl=args.ttl)
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

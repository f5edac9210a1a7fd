"""``pycache-cli`` run for real: the installed console script and ``python -m pycache_client``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_procs import Daemon, free_port

from pycache_client import Client
from pycache_client.cli import format_table

SCRIPT = Path(sys.executable).parent / "pycache-cli"


def cli(daemon_address: str, *args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    exe = [sys.executable, "-m", "pycache_client"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*exe, "-s", daemon_address, *args], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def server(client: Client, daemon: Daemon) -> str:
    return daemon.address  # `client` flushed it


def test_console_script_is_installed() -> None:
    assert SCRIPT.exists(), "pip install -e './client[test]' installs the pycache-cli script"


def test_set_get_delete(server: str) -> None:
    assert cli(server, "set", "greeting", "hello world", "--ttl", "100").returncode == 0
    got = cli(server, "get", "greeting")
    assert (got.returncode, got.stdout, got.stderr) == (0, "hello world\n", "")
    assert cli(server, "delete", "greeting", module=True).returncode == 0
    miss = cli(server, "get", "greeting")
    assert (miss.returncode, miss.stdout) == (1, "")
    assert miss.stderr == "pycache-cli: not found: greeting\n"
    assert cli(server, "delete", "greeting").returncode == 1


def test_values_set_by_cli_read_as_text_by_the_library(server: str) -> None:
    assert cli(server, "set", "k", "é").returncode == 0
    with Client(server) as c:
        assert c.get("k") == "é"
        c.set("j", {"a": 1})
    assert cli(server, "get", "j").stdout == '{"a":1}\n'


def test_incr_decr(server: str) -> None:
    assert cli(server, "incr", "n").returncode == 1
    cli(server, "set", "n", "10")
    assert cli(server, "incr", "n").stdout == "11\n"
    assert cli(server, "incr", "n", "5").stdout == "16\n"
    assert cli(server, "decr", "n", "20", module=True).stdout == "0\n"
    cli(server, "set", "s", "abc")
    bad = cli(server, "incr", "s")
    assert bad.returncode == 3 and "non-numeric" in bad.stderr


def test_stats_prints_an_aligned_table(server: str) -> None:
    out = cli(server, "stats")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["stat", server]
    rows = dict(line.split() for line in lines[1:] if len(line.split()) == 2)
    assert "curr_items" in rows and rows["pid"].isdigit()
    # Right-aligned values: every data row with a value ends in the same column.
    assert len({len(line) for line in lines if len(line.split()) == 2}) == 1
    assert cli(server, "stats", "settings").returncode == 0


def test_flush(server: str) -> None:
    cli(server, "set", "a", "1")
    assert cli(server, "flush").stdout == "OK\n"
    assert cli(server, "get", "a").returncode == 1


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["get"],
        ["set", "k"],
        ["set", "k", "v", "--ttl", "soon"],
        ["incr", "k", "x"],
        ["get", "bad key"],
        ["set", "k", "v", "--ttl", "-1"],
        ["get", "k" * 251],
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str]) -> None:
    # The server is never contacted for these, so a dead port is fine.
    out = cli(f"127.0.0.1:{free_port()}", *args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("pycache-cli: error:")
    assert "Traceback" not in out.stderr


def test_connection_refused_is_one_line_not_a_traceback() -> None:
    address = f"127.0.0.1:{free_port()}"
    for command in (["get", "k"], ["stats"], ["flush"]):
        out = cli(address, *command)
        assert out.returncode == 3
        assert out.stderr == f"pycache-cli: cannot connect to {address}: Connection refused\n"


def test_server_from_environment(server: str) -> None:
    env = dict(os.environ, PYCACHE_SERVER=server)
    subprocess.run([str(SCRIPT), "set", "e", "v"], check=True, env=env, timeout=30)
    out = subprocess.run([str(SCRIPT), "get", "e"], capture_output=True, text=True, env=env, timeout=30)
    assert out.stdout == "v\n"


def test_format_table_several_servers() -> None:
    table = format_table({"a:1": {"pid": "7", "uptime": "12345"}, "bb:2": {"pid": "10"}})
    assert table.splitlines() == [
        "stat      a:1  bb:2",
        "pid         7    10",
        "uptime  12345",
    ]


def test_options_go_anywhere_on_the_line(server: str) -> None:
    run = [str(SCRIPT)]
    after = subprocess.run([*run, "set", "where", "after", "-s", server], capture_output=True, timeout=30)
    assert after.returncode == 0, after.stderr
    got = subprocess.run(
        [*run, "get", "--timeout", "5", "where", "--server", server], capture_output=True, timeout=30
    )
    assert (got.returncode, got.stdout) == (0, b"after\n"), got.stderr
    # Before the command still works, and an option after it wins over one before it.
    dead = f"127.0.0.1:{free_port()}"
    both = subprocess.run([*run, "-s", dead, "get", "where", "-s", server], capture_output=True, timeout=30)
    assert (both.returncode, both.stdout) == (0, b"after\n"), both.stderr


BINARY = bytes(range(256)) * 4 + b"\r\nEND\r\n\x00"


def test_set_from_stdin_keeps_every_byte(server: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [str(SCRIPT), "-s", server, "set", "bin", "-"], input=BINARY, capture_output=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    with Client(server) as c:
        assert c.get("bin") == BINARY  # stored as bytes (flags 0), not text
    out = tmp_path / "out.bin"
    r = subprocess.run(
        [str(SCRIPT), "-s", server, "get", "bin", "-o", str(out)], capture_output=True, timeout=30
    )
    assert r.returncode == 0 and r.stdout == b"", r.stderr
    assert out.read_bytes() == BINARY


def test_set_from_a_file_keeps_every_byte(server: str, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(BINARY)
    r = subprocess.run(
        [str(SCRIPT), "set", "f", "--file", str(src), "-s", server], capture_output=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    got = subprocess.run([str(SCRIPT), "-s", server, "get", "f"], capture_output=True, timeout=30)
    assert got.stdout == BINARY + b"\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["set", "k"], "set needs exactly one of VALUE, - (stdin) or --file FILE"),
        (["set", "k", "v", "--file", "/etc/hostname"], "set needs exactly one of VALUE"),
        (["set", "k", "--file", "/nonexistent/value"], "cannot read /nonexistent/value: No such file"),
    ],
)
def test_value_source_errors_are_one_line(args: list[str], message: str) -> None:
    out = cli(f"127.0.0.1:{free_port()}", *args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out
    assert out.stderr.startswith(f"pycache-cli: error: {message}"), out.stderr


def test_version() -> None:
    out = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "pycache-cli 0.1.0\n")

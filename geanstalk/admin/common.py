"""What every admin command shares: the -a/--json options, output, and exit codes.

Exit codes are part of the interface (scripts branch on them): 0 done,
1 refused (the server declined: NOT_FOUND, a refused confirmation, ...),
2 usage, 3 unreachable (no connection, or it broke).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from typing import Any

from .client import AdminError, Client, Refused, Unreachable

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

Action = Callable[[argparse.Namespace, Client], "int | None"]
Configure = Callable[[argparse.ArgumentParser], None]


class Declined(AdminError):
    """The CLI itself declined (no confirmation, nothing to do where something was asked)."""


class UsageProblem(AdminError):
    """Arguments that parse but do not make sense together."""


def emit_json(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def body_fields(body: bytes) -> dict[str, object]:
    """A body in JSON, bytes safe: base64 always, the text too when it is UTF-8."""
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"body": text, "body_base64": base64.b64encode(body).decode("ascii")}


def write_body(body: bytes) -> None:
    """A body on stdout as its bytes (followed by a newline for the terminal)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(body + b"\n")
    sys.stdout.buffer.flush()


def print_dict(values: dict[str, object]) -> None:
    width = max((len(k) for k in values), default=0)
    for key, value in values.items():
        print(f"{key + ':':<{width + 1}} {value}")


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """Columns sized to their widest cell; numbers right-aligned, text left."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]
    for r in cells:
        parts = [
            c.rjust(w) if num and i else c.ljust(w)
            for i, (c, w, num) in enumerate(zip(r, widths, numeric, strict=True))
        ]
        print("  ".join(parts).rstrip())


def make_main(name: str, description: str, configure: Configure, action: Action) -> Any:
    """The `geanstalk NAME` entry point: parse, connect, run, map errors to exit codes."""

    def main(argv: list[str]) -> int:
        parser = argparse.ArgumentParser(prog=f"geanstalk {name}", description=description)
        parser.add_argument(
            "-a",
            "--address",
            metavar="HOST:PORT",
            help="server to talk to: HOST:PORT or unix:PATH "
            "(default: $BEANSTALKD_ADDR, else 127.0.0.1:11300)",
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        configure(parser)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            return EXIT_OK if exc.code == 0 else EXIT_USAGE
        prog = f"geanstalk {name}"
        try:
            client = Client(args.address)
        except ValueError as exc:  # a bad -a value
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Unreachable as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        try:
            with client:
                return action(args, client) or EXIT_OK
        except UsageProblem as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Unreachable as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except (Refused, Declined) as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except KeyboardInterrupt:
            return EXIT_OK
        except BrokenPipeError:
            return EXIT_OK

    main.__doc__ = f"`geanstalk {name}`: {description}"
    return main


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a non-negative integer: {text}")
    return int(text)

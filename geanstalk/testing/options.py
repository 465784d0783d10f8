"""Server options by the CLI's long names, for the fixtures' factories.

``geanstalk_server_factory(max_job_size=1024, binlog_dir=tmp_path)`` and
``geanstalk_process_factory(...)`` take the same keywords as ``geanstalk
serve`` takes long flags (``--max-job-size`` is ``max_job_size``); this module
turns them into a ServerConfig (in-process) or an argv (subprocess), so both
fixtures accept exactly what the command line accepts.
"""

from __future__ import annotations

import os
from typing import Any

# The beanstalkd-shaped flags (cli.py's _LONG) that take a value, and those that do not.
_VALUED = {"listen", "port", "max_job_size", "binlog_dir", "fsync_ms", "binlog_size", "user"}
_FLAGS = {"no_fsync", "verbose"}


def _long_options() -> dict[str, tuple[str, str]]:
    from geanstalk.cli import LONG_OPTIONS

    return LONG_OPTIONS


def _known(name: str) -> tuple[str, str] | None:
    """(ServerConfig field, kind) for a keyword, or None when `serve` has no such option."""
    if name in _VALUED:
        return name, "value"
    if name == "no_fsync":
        return "fsync_ms", "no_fsync"
    if name == "verbose":
        return "verbose", "count"
    return _long_options().get("--" + name.replace("_", "-"))


def unknown_option(name: str) -> TypeError:
    return TypeError(
        f"geanstalk serve has no option --{name.replace('_', '-')} "
        f"(keywords are the long flag names: max_job_size, binlog_dir, fsync_ms, "
        f"no_fsync, binlog_size, listen='unix:PATH', ...)"
    )


def to_config(options: dict[str, Any]) -> Any:
    """A ServerConfig for an in-process server on 127.0.0.1, any free port by default."""
    from geanstalk.config import ServerConfig

    fields: dict[str, Any] = {"listen": "127.0.0.1", "port": 0}
    for name, value in options.items():
        known = _known(name)
        if known is None:
            raise unknown_option(name)
        field, kind = known
        if kind == "no_fsync":
            if value:
                fields["fsync_ms"] = None
        elif kind == "count":
            fields[field] = int(value)
        elif kind == "false":
            fields[field] = not value
        elif kind == "flag":
            fields[field] = bool(value)
        elif kind == "list":
            fields[field] = list(value) if isinstance(value, (list, tuple)) else [value]
        elif name in ("binlog_dir",) and value is not None:
            fields[field] = os.fspath(value)
        else:
            fields[field] = value
    return ServerConfig(**fields)


def to_argv(options: dict[str, Any]) -> list[str]:
    """The `geanstalk serve` flags for the options (listen and port not included)."""
    argv: list[str] = []
    for name, value in options.items():
        if name in ("listen", "port"):
            continue
        known = _known(name)
        if known is None:
            raise unknown_option(name)
        _, kind = known
        flag = "--" + name.replace("_", "-")
        if kind in ("flag", "false", "no_fsync"):
            if value:
                argv.append(flag)
        elif kind == "count":
            argv += ["-V"] * int(value)
        elif kind == "list":
            for item in value if isinstance(value, (list, tuple)) else [value]:
                argv += [flag, os.fspath(item) if isinstance(item, os.PathLike) else str(item)]
        elif value is not None:
            argv += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv

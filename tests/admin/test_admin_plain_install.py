"""The admin CLI needs nothing but the standard library (a plain install has no client library)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from geanstalk.cli import COMMANDS
from tests.servers import ServerProcess

ADMIN = ("stats", "tubes", "top", "peek", "job", "put", "kick", "kick-job", "bury", "delete",
         "move", "pause", "tail", "dump", "load", "import-binlog")  # fmt: skip


def test_every_admin_command_is_registered_and_resolves() -> None:
    for name in ADMIN:
        module, _, function = COMMANDS[name].partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_a_command_loads_no_third_party_module_and_no_event_loop(server: ServerProcess) -> None:
    script = (
        "import importlib, sys\n"
        "from geanstalk.cli import COMMANDS, main\n"
        f"code = main(['tubes', '--json', '-a', '127.0.0.1:{server.port}'])\n"
        f"for name in {ADMIN!r}:\n"
        "    importlib.import_module(COMMANDS[name].split(':')[0])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('greenstalk', 'pystalk', 'uvloop', 'aiohttp', 'asyncio'))\n"
        "print(code, bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.splitlines()[-1] == "0 []"

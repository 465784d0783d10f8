"""Command line: ``geanstalk serve [flags]``, ``geanstalkd [flags]``, and the
other ``geanstalk COMMAND``s (each a module's function, loaded only when used).

The flags are beanstalkd's, so geanstalk can stand in wherever a beanstalkd
binary is expected. Start-up order matters: the flags are parsed and the
listening socket is bound with nothing but the standard library's builtin
modules loaded, and only then are asyncio and the server imported. A client
(or a supervisor's health check) can connect within milliseconds of exec;
its connection waits in the listen backlog until the loop accepts it.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from geanstalk.config import JOB_SIZE_MAX, ServerConfig

USAGE = """\
Use: {prog} [OPTIONS]

Options:
 -b DIR   write-ahead log directory
 -f MS    fsync at most once every MS milliseconds (default is 50ms);
          use -f0 for "always fsync"
 -F       never fsync
 -l ADDR  listen on address (default is 0.0.0.0); unix:PATH for a unix socket
 -p PORT  listen on port (default is 11300)
 -u USER  become user and group
 -z BYTES set the maximum job size in bytes (default is 65535);
          max allowed is 1073741824 bytes
 -s BYTES set the size of each write-ahead log file (default is 10485760)
 -v       show version information
 -V       increase verbosity
 -h       show this help
 -c, -n   accepted and ignored (the binlog is always compacted)

Long forms: --binlog-dir --fsync-ms --no-fsync --listen --port --user
--max-job-size --binlog-size --version --verbose --help; --no-uvloop runs
on asyncio's own event loop even when uvloop is installed.

Job bodies with -b (docs/BINLOG.md, "Bodies and memory"):
 --body-cache BYTES  bodies kept in memory, the rest read back from the log
                     (K, M, G suffixes; default 1/8 of RAM; 0: none)

Resource bounds (off by default; see docs/SECURITY.md):
 --max-connections N    serve at most N connections; more are reset at once
 --max-memory BYTES     job memory bound; a put past it gets OUT_OF_MEMORY
 --idle-timeout SECONDS close a connection idle that long (no command,
                        no reserved job, no blocked reserve)

Operations (docs/OPERATIONS.md):
 --http ADDR:PORT        serve /metrics /healthz /readyz /stats.json (off by default)
 --metrics-names NAMES   beanstalkd-exporter (default) or beanstalkd-rs
 --no-metrics-instance   no instance="<listen address>" label on the series
 --metrics-tube-limit N  per-tube series for at most N tubes (default 1000)
 --log-format FORMAT     text (default) or json (one object per line)
 A socket passed by systemd (LISTEN_FDS) wins over -l/-p; one named "http"
 (LISTEN_FDNAMES) serves the HTTP endpoint.

High availability (docs/CLUSTER.md; needs `pip install 'geanstalk[cluster]'`):
 --etcd URLS          etcd client URLs, comma-separated (http://H1:2379,...)
 --cluster NAME       the cluster this node belongs to (keys /geanstalk/NAME/)
 --node-name NAME     this node's name (default: its advertised address)
 --advertise H:P      where clients and other nodes reach this node
 --lease-ttl SECONDS  leader lease (default 2): failover takes about this long

TLS (docs/SECURITY.md):
 --tls-listen ADDR:PORT   a TLS listener (repeatable), beside -l/-p
 --tls-cert FILE --tls-key FILE   PEM certificate (chain allowed) and key
 --tls-client-ca FILE     mutual TLS: clients need a certificate signed by it
 --auth-tokens FILE       TLS clients must send `auth <token>` first
 --no-plain               no plain -l/-p listener
 --max-pending-handshakes N   TLS connections in handshake/auth (default 1024)
 --tls-handshake-timeout S, --auth-timeout S   (default 10 s each)
 SIGHUP reloads the certificate, key, CA and tokens.
"""

EXIT_USAGE = 5

# `geanstalk COMMAND ...`: "module:function", imported only when that command
# runs; the function takes the arguments after COMMAND and returns the exit
# status. `serve` is here too, so every command goes through one table.
COMMANDS: dict[str, str] = {
    "serve": "geanstalk.cli:serve_main",
    "import-binlog": "geanstalk.import_binlog:main",
    # the admin CLI (geanstalk/admin/): talks the protocol to any beanstalk server
    "stats": "geanstalk.admin.views:stats",
    "tubes": "geanstalk.admin.views:tubes",
    "top": "geanstalk.admin.top:top",
    "peek": "geanstalk.admin.jobs:peek",
    "job": "geanstalk.admin.jobs:job",
    "put": "geanstalk.admin.jobs:put",
    "kick": "geanstalk.admin.jobs:kick",
    "kick-job": "geanstalk.admin.jobs:kick_job",
    "bury": "geanstalk.admin.jobs:bury",
    "delete": "geanstalk.admin.jobs:delete",
    "move": "geanstalk.admin.jobs:move",
    "pause": "geanstalk.admin.jobs:pause",
    "tail": "geanstalk.admin.jobs:tail",
    "dump": "geanstalk.admin.dumpload:dump",
    "load": "geanstalk.admin.dumpload:load",
    # `geanstalk cluster status --etcd URLS --cluster NAME`: reads etcd, not a server
    "cluster": "geanstalk.cluster.status:main",
}

_LONG = {
    "--binlog-dir": "b",
    "--fsync-ms": "f",
    "--no-fsync": "F",
    "--listen": "l",
    "--port": "p",
    "--user": "u",
    "--max-job-size": "z",
    "--binlog-size": "s",
    "--version": "v",
    "--verbose": "V",
    "--help": "h",
}
_TAKES_ARG = set("bflpuzs")

# Options of `serve` that beanstalkd does not have: long form only.
# "--name": (ServerConfig field, kind); kind is "flag" (no value; sets True),
# "false" (no value; sets False), "str", "size" (a non-negative integer),
# "bytes" (a size with an optional K/M/G/KiB/MiB/GiB suffix, powers of 1024), or
# "list" (a string, repeatable; each use appends).
LONG_OPTIONS: dict[str, tuple[str, str]] = {
    "--tls-listen": ("tls_listen", "list"),
    "--tls-cert": ("tls_cert", "str"),
    "--tls-key": ("tls_key", "str"),
    "--tls-client-ca": ("tls_client_ca", "str"),
    "--auth-tokens": ("auth_tokens", "str"),
    "--no-plain": ("plain", "false"),
    "--max-pending-handshakes": ("max_pending_handshakes", "size"),
    "--tls-handshake-timeout": ("tls_handshake_timeout", "size"),
    "--auth-timeout": ("auth_timeout", "size"),
    "--no-uvloop": ("uvloop", "false"),
    "--max-connections": ("max_connections", "size"),
    "--max-memory": ("max_memory", "size"),
    "--idle-timeout": ("idle_timeout", "size"),
    "--http": ("http", "str"),
    "--metrics-names": ("metrics_names", "str"),
    "--no-metrics-instance": ("metrics_instance", "false"),
    "--metrics-tube-limit": ("metrics_tube_limit", "size"),
    "--log-format": ("log_format", "str"),
    "--etcd": ("etcd", "str"),
    "--cluster": ("cluster", "str"),
    "--node-name": ("node_name", "str"),
    "--advertise": ("advertise", "str"),
    "--lease-ttl": ("lease_ttl", "size"),
    "--body-cache": ("body_cache", "bytes"),
}
_CHOICES = {
    "metrics_names": ("beanstalkd-exporter", "beanstalkd-rs"),
    "log_format": ("text", "json"),
}


class UsageError(Exception):
    pass


_WHITE = " \t\n\v\f\r"
SIZE_T_MAX = (1 << 64) - 1


def parse_size_t(text: str) -> int:
    """A size as beanstalkd reads one, with sscanf's "%zu%c".

    Leading white space and a sign are allowed, nothing may follow the
    digits; a minus sign wraps around (-1 is the largest size_t) and an
    overflow saturates, so `-z -1` means "as large as allowed" to 1.12.
    """
    rest = text.lstrip(_WHITE)
    negative = rest[:1] == "-"
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if not rest or not rest.isascii() or not rest.isdigit():
        raise UsageError(f"invalid size: {text}")
    value = int(rest)
    if value > SIZE_T_MAX:
        return SIZE_T_MAX
    return (-value) & SIZE_T_MAX if negative else value


def _signed(value: int, bits: int) -> int:
    """The C cast of a size_t to a signed integer of `bits` bits."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _size(flag: str, text: str) -> int:
    """A long option's size: a plain non-negative decimal number."""
    if not text.isascii() or not text.isdigit():
        raise UsageError(f"invalid size: {text} (for {flag})")
    return int(text)


def parse_port(text: str) -> int:
    """A port as getaddrinfo() takes beanstalkd's -p: decimal digits, taken
    modulo 2^16 as glibc does (-p 65536 is port 0, any free port), or a
    service name from /etc/services."""
    if text.isascii() and text.isdigit():
        return min(int(text), (1 << 64) - 1) & 0xFFFF
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise PortError(text) from None


class PortError(UsageError):
    """-p names no port: 1.12 fails in getaddrinfo() and exits 111."""


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _bytes(flag: str, text: str) -> int:
    """A size such as 65536, 64M or 64MiB (units are powers of 1024)."""
    number = text.rstrip("KMGiBkmgb")
    unit = text[len(number) :].upper().removesuffix("IB").removesuffix("B")
    if not number.isdigit() or unit not in _UNITS:
        raise UsageError(f"invalid size: {text} (for {flag})")
    return int(number) * _UNITS[unit]


def _apply(opts: ServerConfig, flag: str, value: str | None) -> None:
    if flag == "p":
        opts.port = parse_port(value)  # type: ignore[arg-type]
    elif flag == "l":
        opts.listen = value  # type: ignore[assignment]
    elif flag == "z":
        size = parse_size_t(value)  # type: ignore[arg-type]
        if size > JOB_SIZE_MAX:
            print(f"geanstalk: maximum job size was set to {JOB_SIZE_MAX}", file=sys.stderr)
            size = JOB_SIZE_MAX
        opts.max_job_size = size
    elif flag == "s":
        # 1.12 keeps the file size in an int: stats show that int.
        opts.binlog_size = _signed(parse_size_t(value), 32)  # type: ignore[arg-type]
    elif flag == "f":
        # An int64 of milliseconds; a negative one syncs on every write, as -f 0.
        opts.fsync_ms = max(0, _signed(parse_size_t(value), 64))  # type: ignore[arg-type]
    elif flag == "F":
        opts.fsync_ms = None
    elif flag == "b":
        opts.binlog_dir = value
    elif flag == "u":
        opts.user = value
    elif flag == "V":
        opts.verbose += 1
    elif flag in "cn":
        print(f"geanstalk: -{flag} flag was removed. binlog is always compacted.", file=sys.stderr)


def _apply_long(opts: ServerConfig, name: str, kind: str, field: str, value: str) -> None:
    if kind == "flag":
        setattr(opts, field, True)
    elif kind == "false":
        setattr(opts, field, False)
    elif kind == "size":
        setattr(opts, field, _size(name, value))
    elif kind == "bytes":
        setattr(opts, field, _bytes(name, value))
    elif kind == "list":
        getattr(opts, field).append(value)
    else:
        choices = _CHOICES.get(field)
        if choices is not None and value not in choices:
            raise UsageError(f"invalid value for {name}: {value} (one of {', '.join(choices)})")
        setattr(opts, field, value)


def parse_args(argv: list[str]) -> tuple[ServerConfig, str]:
    """beanstalkd's flag syntax: clustered (-VV), attached (-p11300) or separate
    values, plus long forms (--port 11300, --port=11300).

    Returns the config and the action: "serve", "version" or "help".
    """
    opts = ServerConfig()
    action = "serve"
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            option = LONG_OPTIONS.get(name)
            if option is not None:
                field, kind = option
                if kind in ("flag", "false"):
                    if eq:
                        raise UsageError(f"flag takes no argument: {name}")
                elif not eq:
                    if i >= len(args):
                        raise UsageError(f"flag requires an argument: {name}")
                    value = args[i]
                    i += 1
                _apply_long(opts, name, kind, field, value)
                continue
            flag = _LONG.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: {name}")
            if flag in "vh":
                if eq:
                    raise UsageError(f"flag takes no argument: {name}")
                action = "version" if flag == "v" else "help"
                continue
            if flag in _TAKES_ARG:
                if not eq:
                    if i >= len(args):
                        raise UsageError(f"flag requires an argument: {name}")
                    value = args[i]
                    i += 1
                _apply(opts, flag, value)
            else:
                if eq:
                    raise UsageError(f"flag takes no argument: {name}")
                _apply(opts, flag, None)
            continue
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f"unknown argument: {arg}")
        j = 1
        while j < len(arg):
            flag = arg[j]
            j += 1
            if flag in _TAKES_ARG:
                if j < len(arg):
                    value = arg[j:]
                elif i < len(args):
                    value = args[i]
                    i += 1
                else:
                    raise UsageError(f"flag requires an argument: -{flag}")
                _apply(opts, flag, value)
                break
            if flag not in "FVvhcn":
                raise UsageError(f"unknown flag: -{flag}")
            if flag in "vh":
                action = "version" if flag == "v" else "help"
                continue
            _apply(opts, flag, None)
    return opts, action


def split_address(text: str) -> tuple[str, int]:
    """--tls-listen's ADDR:PORT ([v6]:PORT, or :PORT for every address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"invalid --tls-listen address {text!r} (ADDR:PORT)")
    return host or "0.0.0.0", int(port)


def check_tls_flags(opts: ServerConfig) -> None:
    """The TLS flags that only make sense together."""
    for address in opts.tls_listen:
        split_address(address)
    if opts.tls_listen:
        if not opts.tls_cert or not opts.tls_key:
            raise UsageError("--tls-listen needs --tls-cert and --tls-key")
        if opts.max_pending_handshakes < 1:
            raise UsageError("--max-pending-handshakes must be at least 1")
        return
    needs = [
        flag
        for flag, value in (
            ("--tls-cert", opts.tls_cert),
            ("--tls-key", opts.tls_key),
            ("--tls-client-ca", opts.tls_client_ca),
            ("--auth-tokens", opts.auth_tokens),
            ("--no-plain", not opts.plain),
        )
        if value
    ]
    if needs:
        raise UsageError(f"{needs[0]} needs --tls-listen")


def make_socket(addr: str, port: int) -> socket.socket:
    """A listening, non-blocking socket: TCP (IPv4/IPv6) or unix:PATH."""
    if addr.startswith("unix:"):
        path = addr[5:]
        try:
            import stat

            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a leftover from a previous run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    else:
        portnum = int(port)
        host = addr[1:-1] if addr.startswith("[") and addr.endswith("]") else addr
        infos = socket.getaddrinfo(
            host or None, portnum, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _become(user: str) -> None:
    import pwd

    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f'getpwnam("{user}"): no such user') from None
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def run(argv: list[str], prog: str, command: str | None = None) -> int:
    try:
        opts, action = parse_args(argv)
    except PortError as exc:
        print(
            f"{prog}: cannot listen on port {exc}: getaddrinfo(): "
            "Servname not supported for ai_socktype",
            file=sys.stderr,
        )
        return 111
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        print(USAGE.format(prog=command or prog), file=sys.stderr, end="")
        return EXIT_USAGE
    if action == "help":
        print(USAGE.format(prog=command or prog), file=sys.stderr, end="")
        return 0
    if action == "version":
        print(version_line())
        return 0
    if opts.binlog_dir is not None:
        import importlib.util

        if importlib.util.find_spec("geanstalk.binlog") is None:
            print(f"{prog}: binlog support not available", file=sys.stderr)
            return 1

    if opts.etcd is not None:
        from geanstalk.cluster import config_problem

        problem = config_problem(opts)
        if problem is not None:
            print(f"{prog}: {problem}", file=sys.stderr)
            return EXIT_USAGE

    try:
        check_tls_flags(opts)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        print(USAGE.format(prog=command or prog), file=sys.stderr, end="")
        return EXIT_USAGE

    sockets: list[socket.socket] = []
    http_sock: socket.socket | None = None
    if "LISTEN_FDS" in os.environ:
        from geanstalk import systemd

        try:
            sockets, http_sock, warnings = systemd.split_sockets(systemd.listen_sockets())
        except systemd.ActivationError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 111
        for warning in warnings:
            print(f"{prog}: {warning}", file=sys.stderr)
        if sockets and (opts.listen, opts.port) != (ServerConfig.listen, ServerConfig.port):
            print(
                f"{prog}: inherited listen socket from systemd; ignoring -l {opts.listen} -p {opts.port}",
                file=sys.stderr,
            )
    # The HTTP socket first: once the beanstalk port accepts, so does it.
    if opts.http and http_sock is None:
        try:
            host, sep, port = opts.http.rpartition(":")
            if not sep or not port.isdigit() or int(port) > 65535:
                raise UsageError(f"--http wants ADDR:PORT, got {opts.http}")
            http_sock = make_socket(host or "127.0.0.1", int(port))
        except UsageError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            print(f"{prog}: cannot listen on {opts.http} (--http): {exc}", file=sys.stderr)
            return 111
    if not sockets and opts.plain:
        try:
            sockets = [make_socket(opts.listen, opts.port)]
        except UsageError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            print(
                f"{prog}: cannot listen on {opts.listen} port {opts.port}: {exc}", file=sys.stderr
            )
            return 111
    tls_socks = []
    for address in opts.tls_listen:
        tls_host, tls_port = split_address(address)
        try:
            tls_socks.append(make_socket(tls_host, tls_port))
        except OSError as exc:
            print(f"{prog}: cannot listen on {address} (TLS): {exc}", file=sys.stderr)
            return 111

    # Signals that arrive before the event loop takes over are remembered.
    early: list[int] = []
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: early.append(signum))
    if opts.tls_listen:
        # A reload before the files are first loaded has nothing to do; the
        # TLS listeners install the real SIGHUP handler.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    if opts.user:
        # After the drop the new user may not be able to read the installation
        # (a Python under root's home, say): load the server's code first.
        _preload(opts, http=http_sock is not None)
        try:
            _become(opts.user)
        except (UsageError, OSError) as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 34

    return _run_server(sockets, http_sock, opts, prog, early, tls_socks)


def _preload(opts: ServerConfig, http: bool = False) -> None:
    """Import every module serving needs, while the process can still read them all."""
    import importlib
    import importlib.util

    names = ["logging", "asyncio", "geanstalk.errors", "geanstalk.runner", "geanstalk.accept"]
    names += ["geanstalk.limits", "encodings.idna", "ctypes"]  # ctypes: runner.map_big_blocks
    if opts.binlog_dir is None:
        names.append("geanstalk.journal")
    else:
        names += ["geanstalk.binlog", "geanstalk.bodystore", "geanstalk.beanstalkd_binlog"]
        names.append("concurrent.futures.thread")  # the log's and the body store's threads
    if opts.idle_timeout:
        names.append("geanstalk.idle")
    if opts.tls_listen:
        names += ["ssl", "geanstalk.tls", "geanstalk.auth"]
    if opts.etcd:
        names += ["geanstalk.cluster.node", "geanstalk.cluster.relay", "aiohttp"]
    if http or opts.http or "NOTIFY_SOCKET" in os.environ:
        names += ["geanstalk.http", "geanstalk.metrics", "geanstalk.metrics_stats"]
        names += ["geanstalk.exposition", "geanstalk.instrumented", "geanstalk.systemd"]
    if opts.log_format == "json":
        names.append("geanstalk.logformat")
    if opts.uvloop and importlib.util.find_spec("uvloop") is not None:
        importlib.import_module("uvloop")
    for name in names:
        importlib.import_module(name)


def _run_server(
    sockets: list[socket.socket],
    http_sock: socket.socket | None,
    opts: ServerConfig,
    prog: str,
    early: list[int],
    tls_socks: list[socket.socket],
) -> int:
    import logging

    level = logging.DEBUG if opts.verbose > 1 else logging.INFO if opts.verbose else logging.WARNING
    if opts.log_format == "json":
        from geanstalk.logformat import configure

        configure("json", level, prog)
    else:
        logging.basicConfig(stream=sys.stderr, level=level, format=f"{prog}: %(message)s")
    log = logging.getLogger("geanstalk")
    if opts.verbose:
        log.info("pid %d", os.getpid())

    if opts.binlog_dir is not None:
        from geanstalk.beanstalkd_binlog import looks_like_beanstalkd

        if looks_like_beanstalkd(opts.binlog_dir):
            print(
                f"{prog}: {opts.binlog_dir} holds a beanstalkd binlog, not a geanstalk one; "
                f"bring its jobs across with: geanstalk import-binlog {opts.binlog_dir} NEW_DIR "
                "(then serve -b NEW_DIR)",
                file=sys.stderr,
            )
            return 10

    from geanstalk.errors import BinlogError
    from geanstalk.runner import serve

    if opts.tls_listen:
        # Read the files now, as the user the server runs as (-u), so a bad
        # one stops the start with its reason rather than a traceback.
        from geanstalk.tls import TLSConfigError, check_files

        try:
            check_files(opts)
        except TLSConfigError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1

    try:
        return serve(
            opts, sockets, early_signals=early, http_socket=http_sock, tls_sockets=tls_socks
        )
    except BinlogError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 10
    except ImportError as exc:
        print(f"{prog}: binlog support not available ({exc})", file=sys.stderr)
        return 1


def version_line() -> str:
    """`-v`: the version, and which core this install runs (a bug report's first line)."""
    from geanstalk import __version__
    from geanstalk.core import COMPILED

    core = "compiled core" if COMPILED else "pure-Python core"
    return f"geanstalk {__version__} ({core})"


def serve_main(argv: list[str]) -> int:
    """`geanstalk serve [flags]`."""
    return run(argv, "geanstalk", "geanstalk serve")


def main(argv: list[str] | None = None) -> int:
    """`geanstalk COMMAND [args]`: one of COMMANDS."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        names = ", ".join(sorted(COMMANDS))
        print(f"Use: geanstalk COMMAND [ARGS]   (commands: {names}; geanstalk COMMAND -h)")
        return 0 if args else EXIT_USAGE
    if args[0] in ("-v", "--version"):
        return run(args[:1], "geanstalk")
    # `geanstalk -a HOST:PORT stats` as well as `geanstalk stats -a HOST:PORT`
    lead: list[str] = []
    while args[0] in ("-a", "--address", "--json") or args[0].startswith("--address="):
        take = 2 if args[0] in ("-a", "--address") else 1
        lead, args = lead + args[:take], args[take:]
        if not args:
            print("geanstalk: a command is needed after the options", file=sys.stderr)
            return EXIT_USAGE
    target = COMMANDS.get(args[0])
    if target is None:
        print(f"geanstalk: unknown command: {args[0]}", file=sys.stderr)
        return EXIT_USAGE
    import importlib

    module, _, function = target.partition(":")
    return int(getattr(importlib.import_module(module), function)(args[1:] + lead) or 0)


def beanstalkd_main(argv: list[str] | None = None) -> int:
    """`geanstalkd [flags]`: the same server, invoked like beanstalkd."""
    return run(sys.argv[1:] if argv is None else argv, "geanstalkd")

"""The resolved configuration: frozen, slotted, validated once by `corral.config.load`.

Nothing here reads files. Every object that came from a file carries a `Location` so that later
layers (and `corral check`) can point at the line that produced it.

Environment values are stored as ordered tuples of `(name, value)` pairs, already expanded
against the OS environment and the module variables (`APPL_PHYSICAL_PATH`...). The per-worker
variables `%PORT%`, `%HOST%` and `%INSTANCE_ID%` are only known when a worker starts: they stay
written as `%PORT%`... here and are filled in by `corral.config.expand.finish_env` /
`finish_argv`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from corral.config.settings_app import WARM_UP_REQUESTS_DEFAULT
from corral.protocol.fastcgi.constants import MAX_PIPELINE_DEPTH

if TYPE_CHECKING:  # (corral.config.rewrite builds on Location, below)
    from corral.config.rewrite import RewriteScope


@dataclass(frozen=True, slots=True)
class Location:
    """Where a value was written: a file and a 1-based line (0 when the line is unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Transport(enum.StrEnum):
    """How the front reaches a backend (Zoo's `transport` attribute)."""

    #: Zoo's Windows named pipe; off Windows a Unix socket handed to the worker as fd 0.
    NAMED_PIPE = "NamedPipe"
    #: A TCP port from portLower..portUpper, passed to the backend as PORT/HOST and %PORT%/%HOST%.
    TCP = "tcp"
    #: Connect to an already running server at host:port; nothing is started.
    TCP_SERVICE = "tcp.service"
    #: Corral's own: the command listens itself on a Unix socket at a per-worker path in the
    #: pool's private (0700) runtime directory, passed as SOCKET and %SOCKET%, so that no other
    #: local user can reach the backend (Node.js `server.listen(path)`, puma `-b unix://`,
    #: gunicorn `--bind unix:`).
    UNIX = "unix"


class WireProtocol(enum.StrEnum):
    """What the front speaks to a backend (Zoo's `protocol` attribute)."""

    FASTCGI = "fastcgi"
    HTTP = "http"
    #: FastCGI to php-cgi (split params and padded empty records are not assumed).
    FASTCGI_PHP = "fastcgi-php"


class EngineKind(enum.StrEnum):
    """What actually runs behind an engine."""

    #: Corral's own Python worker (`python -m corral.worker`) in the app's interpreter.
    PYTHON_WORKER = "python-worker"
    #: Any command (`fullPath` + `arguments`, or the app's APP_COMMAND for generic engines).
    COMMAND = "command"
    #: Nothing is started: an already running server (transport tcp.service).
    SERVICE = "service"


Env = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One `<add name value/>` (or TOML `env` entry) as written, before expansion."""

    name: str
    value: str
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How to start a backend and how to talk to it (administrator's declaration)."""

    name: str
    kind: EngineKind
    transport: Transport
    protocol: WireProtocol
    full_path: str = ""
    arguments: str = ""
    display_name: str = ""
    host: str = "127.0.0.1"
    port_lower: int = 49152
    port_upper: int = 65535
    min_instances: int = 1
    #: 0 means one per CPU: use `max_workers(os.cpu_count())`.
    max_instances: int = 0
    #: Minutes a worker may live before it is recycled; 0 = forever.
    time_limit: int = 0
    #: Megabytes of memory after which a worker is recycled; 0 = unlimited.
    memory_limit: int = 0
    #: Seconds a worker above the floor may stay idle before it is stopped; 0 = never.
    idle_timeout: int = 300
    #: Python engines: requests one worker serves at once (threads); 0 = as many as the load
    #: needs, up to max_threads (adaptive concurrency).
    threads: int = 0
    #: Python engines with threads = 0: the most threads one worker starts on demand.
    max_threads: int = 128
    #: Requests after which a worker is recycled (plus jitter); 0 = never.
    max_requests: int = 0
    #: Percent of max_requests added at random per worker.
    max_requests_jitter: int = 10
    #: Megabytes of available memory below which no worker starts; 0 = no reserve.
    memory_reserve: int = 64
    #: Python engines: requests one worker connection may carry at once when all are busy.
    pipeline_depth: int = MAX_PIPELINE_DEPTH
    #: Seconds a stopping worker gets to finish its requests before it is killed.
    graceful_shutdown_timeout: int = 10
    #: Seconds between the pool's health rounds (memory, limits, idle probes).
    health_interval: float = 5.0
    #: Seconds an idle worker goes unprobed before a health round probes it.
    probe_interval: float = 30.0
    #: Seconds a probed idle worker has to answer before it is replaced.
    probe_timeout: float = 10.0
    #: Request buffering: "on" (read each request body whole, to memory then a temporary file,
    #: before a worker is leased, and send it with its CONTENT_LENGTH), "off", or "auto": on
    #: for backends that read up to CONTENT_LENGTH (protocol fastcgi-php: php-cgi, php-fpm).
    request_buffering: str = "auto"
    enabled: bool = True
    #: Variables set for every worker of this engine, as written (expanded per application).
    env: tuple[EnvVar, ...] = ()
    #: tcp.service: several servers, "host:port" or "unix:/path", separated by spaces or commas
    #: (empty: the one at host:portLower); their active check ("" none, "fastcgi", or an HTTP
    #: path); the seconds a returning server's share ramps up over.
    servers: str = ""
    health_check: str = ""
    slow_start: float = 10.0
    #: "built-in", "engines", "userEngines" or "toml": which declaration won.
    origin: str = "built-in"
    #: Source extensions this engine executes (never served as static files).
    source_suffixes: tuple[str, ...] = ()
    location: Location | None = None

    def service_address(self) -> str | tuple[str, int]:
        """tcp.service: where the running server listens, `(host, portLower)`, or the Unix
        socket path of a host written `unix:/run/php/php8.2-fpm.sock`."""
        if self.host.startswith("unix:"):
            return self.host[len("unix:") :]
        return (self.host, self.port_lower)

    def service_addresses(self) -> tuple[str | tuple[str, int], ...]:
        """tcp.service: every server, from `servers` when set (else `service_address()`).
        ValueError names a malformed address."""
        if not self.servers.strip():
            return (self.service_address(),)
        return tuple(parse_server(item) for item in self.servers.replace(",", " ").split() if item)

    def max_workers(self, cpu_count: int | None) -> int:
        """maxInstances with Zoo's 0 = "as many as CPU cores" resolved."""
        if self.max_instances > 0:
            return self.max_instances
        return max(1, cpu_count or 1)


def parse_server(text: str) -> str | tuple[str, int]:
    """One server of a tcp.service `servers` list: `unix:/path`, `host:port` or `[v6]:port`."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: a Unix socket is written unix:/absolute/path")
        return path
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port (port 1..65535) nor unix:/path")
    return (host, int(port))


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a site listens, IIS-style: address, port and the host names it answers to."""

    address: str = "127.0.0.1"
    port: int = 8080
    #: Lower-case host names; empty means every host (the binding's default site).
    #: A leading "*." is a wildcard for one or more labels.
    hosts: tuple[str, ...] = ()
    location: Location | None = None
    #: "http", or "https": TLS with ``certificate`` and ``key`` (see docs/tls.md).
    protocol: str = "http"
    #: https: absolute paths of the PEM certificate (chain) and of its private key. The files
    #: are read by the host process at start and reload (``corral.front.tls``), never stored.
    certificate: str = ""
    key: str = ""

    @property
    def tls(self) -> bool:
        return self.protocol == "https"


@dataclass(frozen=True, slots=True)
class Handler:
    """One IIS handler mapping that sends matching URLs to a Zoo application."""

    #: Handler name as written (`WSGI.project#x64`).
    name: str
    #: The `<application name>` it binds to: the handler name without its `#suffix`.
    app_name: str
    #: IIS `path` pattern: `*`, `*.php`, `index.php`...; matched against the last URL segment.
    path: str
    #: The engine named by `scriptProcessor`.
    engine: str
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class HandlerScope:
    """The handler list in effect at and below one folder of a mount.

    `folder` is the URL sub-path relative to the mount (`""` for the mount's own web.config,
    `"static"` for `static/web.config`). The deepest scope whose folder contains a request path
    decides; its handlers are tried in order and the first match wins; none = static file.
    """

    folder: str
    handlers: tuple[Handler, ...]
    location: Location | None = None


#: A folder URL's default documents, tried in order, unless the mount's web.config says otherwise
#: (`<defaultDocument>`): IIS's list with `index.php` first, as hosting panels set PHP sites up.
DEFAULT_DOCUMENTS = ("index.php", "index.html", "index.htm", "default.htm", "default.html")


@dataclass(frozen=True, slots=True)
class StaticPolicy:
    """What may be served from a mount's folder for URLs no handler maps."""

    root: str
    #: Folders (relative, `/`-separated) never served: every app's ERROR_LOG_DIR and
    #: DEPLOY_LOG folder inside the root (not the root itself).
    hidden_dirs: tuple[str, ...] = ()
    #: Lower-case suffixes never served: the source files of the mount's engines (`.py`, `.php`).
    source_suffixes: tuple[str, ...] = ()
    #: Files (relative) named by the apps' variables: DEPLOY_FILE, DEPLOY_LOG, PHP_INI.
    hidden_files: tuple[str, ...] = ()
    #: A folder URL's default documents in order (`<defaultDocument>`; empty: disabled). Names a
    #: file handler maps go to the application (`corral.routing`), the others are files.
    default_documents: tuple[str, ...] = DEFAULT_DOCUMENTS


@dataclass(frozen=True, slots=True)
class NotInEffect:
    """A setting Corral accepted but whose behaviour the runtime does not implement yet."""

    setting: str
    value: str
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Tenancy:
    """Who an application runs as and its hard limits (the `tenant.*` settings; 0 = none)."""

    user: str | None = None
    group: str | None = None
    #: Megabytes for all of the application's processes together.
    memory_hard_limit: int = 0
    #: Percent of one core.
    cpu_quota: int = 0
    max_processes: int = 0
    max_open_files: int = 0
    #: Where the user was set (for refusals naming file and line).
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One Zoo application (`<application name>` bound by handlers) at a mount's virtual path."""

    name: str
    site: str
    #: URL prefix: "/" or "/blog" (no trailing slash); SCRIPT_NAME is "" for "/" else this.
    virtual_path: str
    #: Absolute folder of the mount (APPL_PHYSICAL_PATH).
    physical_path: str
    engine: EngineConfig
    #: The handlers (at any folder of the mount) that route to this application.
    handlers: tuple[Handler, ...]
    #: Engine + application variables after expansion (see the module docstring for %PORT%).
    env: Env
    #: Module variables: APPL_PHYSICAL_PATH, APPL_PHYSICAL_SHORT_PATH, APPL_VIRTUAL_PATH, APPL_ID.
    module_vars: Env
    #: Command to start a worker: argv with %PORT%/%HOST%/%INSTANCE_ID% still to fill in.
    #: Empty for tcp.service engines (nothing is started).
    argv: tuple[str, ...]
    #: Working directory of the workers (CURRENT_DIRECTORY, default the physical path).
    current_directory: str
    #: Python engines: the interpreter that runs `corral.worker` ("" for other engines).
    interpreter: str = ""
    #: Python engines: the engine's own interpreter (its fullPath, else Corral's), which runs
    #: the deploy script while VIRTUAL_ENV has no bin/python yet (the script makes it).
    base_interpreter: str = ""
    #: Absolute PYTHONPATH entries (already in `env` as PYTHONPATH, os.pathsep-joined).
    pythonpath: tuple[str, ...] = ()
    wsgi_app: str | None = None
    deploy_file: str | None = None
    deploy_log: str | None = None
    #: Seconds the deploy script may run (DEPLOY_TIMEOUT).
    deploy_timeout: int = 600
    #: Absolute folder for the workers' error logs; None when unset or "NULL".
    error_log_dir: str | None = None
    #: Rotation of the error log: size in KiB, rotated files kept.
    error_log_max_kb: int = 10240
    error_log_files: int = 5
    watch_file_changes_mask: tuple[str, ...] = ()
    #: CONSOLE_URL below the virtual path, without slashes at its ends ("console", "tools/sh");
    #: None: no web console.
    console_url: str | None = None
    #: HTTP engines: the Host header sent to the backend (ZOO_SUBSTITUTE_HOST); None: the
    #: client's.
    zoo_substitute_host: str | None = None
    #: The site's switchboard allows the web console (its ``console`` entry; default allowed).
    console_allowed: bool = True
    #: CONSOLE_IDLE_TIMEOUT: seconds a console session may pass with no input or output.
    console_idle_timeout: float = 900.0
    #: WORKER_REQUEST_TIMEOUT (seconds; 0 or None: no limit), the declaration's default.
    worker_request_timeout: int | None = 300
    #: DEVELOPMENT_MODE: error pages show the traceback to every client.
    development_mode: bool = False
    #: Requests one worker serves before the pool replaces it; 0 = no limit. PHP engines:
    #: PHP_FCGI_MAX_REQUESTS (php-cgi exits after that many by itself).
    max_requests: int = 0
    #: Request buffering in effect (REQUEST_BUFFERING, else the engine's requestBuffering,
    #: where "auto" means PHP engines): each request body is read whole before a worker is
    #: leased, and sent with its CONTENT_LENGTH.
    request_buffering: bool = False
    #: Its user and limits (the site's and mount's `tenant.*` settings).
    tenancy: Tenancy = Tenancy()
    #: PRELOAD: "auto", "on" or "off" (Corral's Python worker: workers forked from a template).
    preload: str = "auto"
    #: WORKER_SCHEDULING: "batch" or "normal" (Corral's Python worker's threads, Linux).
    worker_scheduling: str = "batch"
    #: Server hooks (module:function): app start, after fork, worker exit.
    hook_app_start: str | None = None
    hook_after_fork: str | None = None
    hook_worker_exit: str | None = None
    #: WARM_UP: the request the template sends through the app before it forks (a path or an
    #: http(s) URL; None: none), WARM_UP_REQUESTS times.
    warm_up: str | None = None
    warm_up_requests: int = WARM_UP_REQUESTS_DEFAULT
    #: Things `corral check` tells the user (engine aliasing, the interpreter used...).
    notices: tuple[str, ...] = ()
    not_in_effect: tuple[NotInEffect, ...] = ()
    location: Location | None = None

    @property
    def script_name(self) -> str:
        return "" if self.virtual_path == "/" else self.virtual_path

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True, slots=True)
class Mount:
    """An IIS application: a virtual path of a site served from one physical folder."""

    virtual_path: str
    physical_path: str
    #: Deepest-first is not required; `corral.routing` orders them itself.
    scopes: tuple[HandlerScope, ...]
    #: Names of the applications (in `SiteConfig.apps`) that this mount's handlers use.
    app_names: tuple[str, ...]
    static: StaticPolicy
    location: Location | None = None
    #: URL Rewrite rules (`<rewrite><rules>`, `[[rewrite]]`) in effect per folder; empty: none
    #: (`corral.rewrite` applies them, `front/rewriting.py` before routing).
    rewrite: tuple[RewriteScope, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    bindings: tuple[Binding, ...]
    mounts: tuple[Mount, ...]
    apps: tuple[AppConfig, ...]
    #: Engines this site may use by <switchboard> (name -> enabled); "*" is the default.
    switchboard: tuple[tuple[str, bool], ...] = ()
    location: Location | None = None
    #: Plain HTTP requests for this site get a 308 to https on its first https binding's port.
    https_redirect: bool = False
    #: The Strict-Transport-Security value sent on this site's TLS responses; None: the
    #: server's (``FrontSettings.hsts``), "" for none.
    hsts: str | None = None

    def https_port(self) -> int | None:
        """The port of the site's first https binding (None: it has none)."""
        for binding in self.bindings:
            if binding.tls:
                return binding.port
        return None

    def app(self, virtual_path: str, name: str) -> AppConfig:
        for app in self.apps:
            if app.virtual_path == virtual_path and app.name == name:
                return app
        raise KeyError((virtual_path, name))


@dataclass(frozen=True, slots=True)
class FrontSettings:
    """The front server's limits and timeouts, with their defaults (the `server.*` settings of
    `corral.config.settings_server` read their defaults from here). Built by `corral.config.load`
    from the files, with `corral serve --set` on top (`corral.app.front_settings`)."""

    #: Seconds to receive a complete request head (from the first byte, or the connection's
    #: start); past it: 408 when some bytes came, a silent close when none did.
    header_timeout: float = 10.0
    #: Seconds a kept-alive connection may stay idle between requests (closed silently).
    keepalive_timeout: float = 5.0
    #: Seconds without any request body bytes while the body is being read: 408.
    body_timeout: float = 30.0
    #: Seconds without any sign of the backend (waiting for its head, or between its body
    #: pieces; also a client that reads nothing of the response): 504 (or the connection is
    #: aborted once the response has started).
    response_timeout: float = 60.0
    #: Seconds to wait for a free backend worker before a 503.
    acquire_timeout: float = 30.0
    #: Largest request body accepted (413 past it). Default 4 GiB.
    max_body_size: int = 4 * 1024**3
    #: Largest request line (target included) accepted: 414 past it.
    max_request_line: int = 8190
    #: Largest request head (all fields) accepted: 431 past it.
    max_header_size: int = 65536
    #: Most header fields accepted: 431 past it.
    max_header_count: int = 100
    #: Largest single header field (name + value): 431 past it.
    max_header_field: int = 8190
    #: Retry-After seconds on a 503 (queue full, application unavailable).
    retry_after: int = 5
    #: Client transport write-buffer high-water mark: the backend is paused above it.
    write_buffer_high: int = 256 * 1024
    #: Seconds given to in-flight requests at shutdown (SIGTERM/SIGINT).
    shutdown_grace: float = 30.0
    #: Seconds of serving with readiness false before a stop (with an admin listener).
    drain_delay: float = 5.0
    #: Front processes sharing the bindings and one supervisor of the workers (issue 16);
    #: 0 = auto: max(1, min(8, cpu_count // 4)) (``corral.ops.fronts.front_count``).
    front_processes: int = 0
    #: Show a failing application's error output (traceback) on 503 pages to loopback clients.
    show_errors_to_loopback: bool = True
    #: Seconds a tunnel (a connection switched to another protocol, e.g. WebSocket, after 101)
    #: may carry no bytes either way before both sides are closed.
    tunnel_idle_timeout: float = 300.0
    #: Client addresses or CIDR networks ("*": any) whose X-Forwarded-For/-Proto/-Host and
    #: Forwarded fields HTTP backends may see; from anyone else those fields are dropped.
    trusted_proxies: tuple[str, ...] = ()
    #: Request buffering: bytes of one request body kept in memory before the rest goes to a
    #: temporary file.
    request_buffer_memory: int = 64 * 1024
    #: Least average rate (bytes/s) at which a request body must arrive once
    #: ``body_rate_grace`` has passed (408 below it); 0 = no minimum.
    min_body_rate: int = 500
    #: Seconds a request body is given before ``min_body_rate`` applies.
    body_rate_grace: float = 20.0
    #: Bytes of one response kept in a temporary file for a client that reads slower than the
    #: backend writes (past ``write_buffer_high``), so that the worker is released at once; 0 =
    #: no spill (the backend is paused instead).
    response_spill_max: int = 1024**3
    #: Bytes of responses all spills together may hold on disk; past it responses are paused
    #: (back-pressure) instead.
    response_spill_total: int = 8 * 1024**3
    # -- logs and the process (corral.logs, corral.ops.service) --------------------------------
    #: Where the access log goes: "-" (stderr), "off", or a file (appended to; reopened on
    #: SIGUSR1).
    access_log: str = "-"
    #: The access log's format: "combined", "extended" or "json" (corral.front.accesslog).
    access_log_format: str = "combined"
    #: The server log's level: "debug", "info", "warning" or "error".
    log_level: str = "info"
    #: A file to write the host's process id to once it listens (removed at exit).
    pid_file: str | None = None
    # The admin listener (``corral.ops.admin``), read by the host, not the front:
    #: Where it listens ("HOST:PORT"); None: no admin listener.
    admin: str | None = None
    #: The token ``/metrics`` asks for (Authorization: Bearer); None: ``/metrics`` is open.
    metrics_token: str | None = None
    # --- TLS (docs/tls.md) ---
    #: The Strict-Transport-Security value of every site's TLS responses (a site's ``hsts``
    #: wins); "" sends none.
    hsts: str = ""
    #: Seconds a client has to complete the TLS handshake of an https binding.
    tls_handshake_timeout: float = 10.0
    #: Seconds after which each https listener takes fresh TLS contexts, and so fresh session
    #: ticket keys (OpenSSL makes them per context and never rotates them); 0 = never.
    tls_ticket_key_lifetime: float = 3600.0
    #: The user (and group) the front drops to after binding, when started as root.
    user: str | None = None
    group: str | None = None
    #: Whether an application without a user may run as root (else a refusal).
    allow_root_apps: bool = True

    # --- HTTP/2 (docs/http2.md) ---
    #: Serve HTTP/2 with prior knowledge on plain bindings (a connection opening with the h2
    #: preface); https bindings offer h2 through ALPN whatever this says.
    http2_cleartext: bool = False
    #: Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    http2_max_streams: int = 100
    #: Bytes of request body one HTTP/2 stream may send ahead of the application
    #: (SETTINGS_INITIAL_WINDOW_SIZE): held back while the backend does not read.
    http2_stream_window: int = 256 * 1024
    #: Streams an HTTP/2 client may reset (RST_STREAM) within 10 seconds before the connection
    #: is closed with GOAWAY ENHANCE_YOUR_CALM (the rapid-reset attack, CVE-2023-44487).
    http2_max_resets: int = 200


@dataclass(frozen=True, slots=True)
class IncludedFile:
    """A site file or site folder that a `[server] include` pattern matched (`config.include`).

    `errors` (location, setting, message): why it was refused; then `kept` says whether its
    sites (`sites`) are the ones of the configuration before (a reload keeps a refused file's
    previous state) or it serves none."""

    path: str
    #: The include pattern that matched it, as written.
    pattern: str
    sites: tuple[str, ...]
    errors: tuple[tuple[Location, str, str], ...] = ()
    kept: bool = False


@dataclass(frozen=True, slots=True)
class ServerConfig:
    sites: tuple[SiteConfig, ...]
    #: Every engine known after built-ins < <engines> < <userEngines> < TOML.
    engines: tuple[EngineConfig, ...]
    #: The files read, in order.
    sources: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    not_in_effect: tuple[NotInEffect, ...] = field(default=())
    #: The front server's limits and timeouts (`[server]` in the server TOML, attributes of
    #: `<heliconZooServer>`); the command line's `--set` is applied over them by `corral.app`.
    front: FrontSettings = field(default_factory=FrontSettings)
    #: Every site file and site folder the include patterns matched, in their order.
    included: tuple[IncludedFile, ...] = ()
    #: The include patterns, absolute (a file appearing that one matches is a new site file).
    include_patterns: tuple[str, ...] = ()

    def engine(self, name: str) -> EngineConfig:
        for engine in self.engines:
            if engine.name == name:
                return engine
        raise KeyError(name)

    @property
    def apps(self) -> tuple[AppConfig, ...]:
        return tuple(app for site in self.sites for app in site.apps)

    def listen_addresses(self) -> tuple[tuple[str, int], ...]:
        """Each (address, port) to listen on once; sites sharing one are told apart by Host."""
        seen: dict[tuple[str, int], None] = {}
        for site in self.sites:
            for binding in site.bindings:
                seen[(binding.address, binding.port)] = None
        return tuple(seen)

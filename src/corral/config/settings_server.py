"""The front server's settings (`[server]`, `<heliconZooServer>` attributes), and the pool
settings only the command line sets (`corral serve --set NAME=VALUE`)."""

from __future__ import annotations

from corral.config.model import FrontSettings
from corral.config.setting import Kind, PoolUse, Scope, Setting, to_float

#: The front server's defaults: the server settings' defaults are read from it, so that each
#: default is written once (in `FrontSettings`).
FRONT_DEFAULTS = FrontSettings()


def _server(
    field: str,
    zoo_name: str,
    kind: Kind,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: bool = False,
    choices: tuple[str, ...] = (),
    secret: bool = False,
) -> Setting:
    """A front-server setting: `server.FIELD`, TOML key FIELD in `[server]`, the attribute
    `zoo_name` on applicationHost.config's `<heliconZooServer>`, default `FrontSettings`'."""
    return Setting(
        f"server.{field}",
        Scope.SERVER,
        field,
        zoo_name,
        kind,
        getattr(FRONT_DEFAULTS, field),
        doc,
        minimum=minimum,
        maximum=maximum,
        above=above,
        choices=choices,
        secret=secret,
    )


def _pool(field: str, kind: Kind, default: object, doc: str, use: PoolUse) -> Setting:
    """A pool setting that no file spells: `pool.FIELD`, set by `--set FIELD=VALUE` only."""
    return Setting(f"pool.{field}", Scope.POOL, "", "", kind, default, doc, pool=use)


SERVER_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "server.application_host",
        Scope.SERVER,
        "application_host",
        "applicationHost.config",
        Kind.PATH,
        None,
        "Helicon's applicationHost.config to read <heliconZooServer> from.",
    ),
    # --- sites as files (`corral.config.include`) ---
    Setting(
        "server.include",
        Scope.SERVER,
        "include",
        "",
        Kind.PATH_LIST,
        (),
        "Site files and site folders, relative to the server file: "
        '["sites.d/*.toml"] (each file holds [sites.NAME] tables) and "vhosts/*/" (each folder '
        "is a site named after it, with its web.config); a wildcard only in the last part. "
        "Adding, changing or removing one adds, reloads or removes its sites alone; a broken one "
        "is refused and its sites keep their previous state.",
    ),
    Setting(
        "server.include_bindings",
        Scope.SERVER,
        "include_bindings",
        "",
        Kind.BINDINGS,
        ("127.0.0.1:8080",),
        'Where the site folders of an include pattern ending in "/" listen: "address:port" '
        "strings or {address, port} tables; each folder's name is its site's host name.",
    ),
    # --- end of sites as files ---
    _server(
        "trusted_proxies",
        "trustedProxies",
        Kind.ADDRESSES,
        "Client addresses or CIDR networks (* = any) whose X-Forwarded-For/-Proto/-Host and "
        "Forwarded fields are believed: they become the client's address (REMOTE_ADDR, the "
        "access log), scheme (HTTPS) and host for every backend kind; from other clients those "
        "fields are dropped (FastCGI) or replaced (HTTP backends).",
    ),
    # The front server's limits and timeouts (`corral.front.settings.FrontSettings`, whose
    # defaults these are). `corral serve --set NAME=VALUE` overrides them.
    _server(
        "header_timeout",
        "headerTimeout",
        Kind.NUMBER,
        "Seconds a client has to send a complete request head (from its first byte, or from "
        "the connection's start); past it: 408 when some bytes came, a silent close when none "
        "did.",
        minimum=0,
        above=True,
    ),
    _server(
        "keepalive_timeout",
        "keepaliveTimeout",
        Kind.NUMBER,
        "Seconds a kept-alive client connection may stay idle between requests before it is "
        "closed (silently).",
        minimum=0,
        above=True,
    ),
    _server(
        "body_timeout",
        "bodyTimeout",
        Kind.NUMBER,
        "Seconds without any request body bytes while a body is being read: 408.",
        minimum=0,
        above=True,
    ),
    _server(
        "response_timeout",
        "responseTimeout",
        Kind.NUMBER,
        "Seconds without any sign of the backend (waiting for its response head, or between "
        "its body pieces; also a client that reads nothing of the response): 504, or the "
        "connection is aborted once the response has started.",
        minimum=0,
        above=True,
    ),
    _server(
        "acquire_timeout",
        "acquireTimeout",
        Kind.NUMBER,
        "Seconds a request may wait for a free backend worker before it gets 503.",
        minimum=0,
        above=True,
    ),
    _server(
        "max_body_size",
        "maxBodySize",
        Kind.INT,
        "Largest request body accepted, in bytes (default 4 GiB); a larger one gets 413.",
        minimum=0,
    ),
    _server(
        "max_request_line",
        "maxRequestLine",
        Kind.INT,
        "Longest request target accepted, in bytes; a longer one gets 414.",
        minimum=1,
    ),
    _server(
        "max_header_size",
        "maxHeaderSize",
        Kind.INT,
        "Largest request head accepted (all header fields, each counted as name + value + 4), "
        "in bytes; a larger one gets 431.",
        minimum=1,
    ),
    _server(
        "max_header_count",
        "maxHeaderCount",
        Kind.INT,
        "Most header fields accepted in a request; more get 431.",
        minimum=1,
    ),
    _server(
        "max_header_field",
        "maxHeaderField",
        Kind.INT,
        "Largest single header field (name + value + 4), in bytes; a larger one gets 431.",
        minimum=1,
    ),
    _server(
        "retry_after",
        "retryAfter",
        Kind.INT,
        "Seconds sent as Retry-After on a 503 (queue full, application unavailable or deploying).",
        minimum=0,
    ),
    _server(
        "write_buffer_high",
        "writeBufferHigh",
        Kind.INT,
        "Bytes of response waiting to be sent to a slow client above which reading from the "
        "backend pauses (the client connection's write-buffer high-water mark).",
        minimum=1,
    ),
    _server(
        "shutdown_grace",
        "shutdownGrace",
        Kind.NUMBER,
        "Seconds requests in flight are given to finish when the server stops (SIGTERM, "
        "SIGINT), and a removed application's pool when a reload drops it.",
        minimum=0,
    ),
    _server(
        "drain_delay",
        "drainDelay",
        Kind.NUMBER,
        "Seconds the server keeps serving after SIGTERM (or corral stop) with /readyz already "
        "answering 503, so that load balancers and Kubernetes endpoints stop sending it new "
        "requests before it stops accepting; during them every response says Connection: "
        "close. Only with an admin listener (nothing else can see readiness); SIGINT (Ctrl-C) "
        "and a second SIGTERM skip it. Then shutdown_grace applies to what is in flight.",
        minimum=0,
    ),
    # --- the front across cores (issue 16, docs/scaling.md) ---
    _server(
        "front_processes",
        "frontProcesses",
        Kind.INT,
        "Front processes that accept on the same bindings and share one supervisor of the "
        "workers (one set of workers and one max_instances per application, whatever the "
        "number). 0 = auto: one per 4 CPU cores, at least 1, at most 8 (the fronts share the "
        "cores with the applications' workers; docs/scaling.md). 1 = the single-process host. "
        "Read at start: a reload does not change it.",
        minimum=0,
        maximum=64,
    ),
    # --- end of the front across cores ---
    _server(
        "show_errors_to_loopback",
        "showErrorsToLoopback",
        Kind.BOOL,
        "Show a failing application's error output (its traceback) and a deploy script's "
        "output to local clients: a loopback peer whose request carries no forwarding field, "
        "or the loopback client a trusted proxy names. Others get a reference id.",
    ),
    _server(
        "tunnel_idle_timeout",
        "tunnelIdleTimeout",
        Kind.NUMBER,
        "Seconds a tunnel (a connection switched to another protocol after 101, e.g. a "
        "WebSocket) may carry no bytes either way before both sides are closed.",
        minimum=0,
        above=True,
    ),
    _server(
        "request_buffer_memory",
        "requestBufferMemory",
        Kind.INT,
        "Request buffering (an engine's requestBuffering): bytes of one request body kept in "
        "memory; the rest goes to a temporary file (unlinked at once) in a private folder of "
        "the temporary directory (TMPDIR).",
        minimum=0,
    ),
    _server(
        "min_body_rate",
        "minBodyRate",
        Kind.INT,
        "Least average rate, in bytes per second, at which a request body must arrive once "
        "body_rate_grace has passed (the allowance grows by one second per min_body_rate "
        "bytes received); slower gets 408, so that a trickling upload cannot hold a worker or "
        "a connection for ever. 0 = no minimum (body_timeout alone).",
        minimum=0,
    ),
    _server(
        "body_rate_grace",
        "bodyRateGrace",
        Kind.NUMBER,
        "Seconds a request body is given, from when it is first wanted, before min_body_rate "
        "applies.",
        minimum=0,
    ),
    _server(
        "response_spill_max",
        "responseSpillMax",
        Kind.INT,
        "Bytes of one response kept in a temporary file (unlinked at once) for a client that "
        "reads slower than the application writes (past write_buffer_high), so that the "
        "worker is read at full speed and released at the end of its response while the "
        "client drains the file; past it the application is paused. 0 = no spill.",
        minimum=0,
    ),
    _server(
        "response_spill_total",
        "responseSpillTotal",
        Kind.INT,
        "Bytes of responses that every spill together may hold on disk (default 8 GiB); past "
        "it, slow clients' applications are paused (back-pressure) until spills drain.",
        minimum=0,
    ),
    # -- logs and the process (corral.logs, corral.front.accesslog, corral.ops.service) ---------
    _server(
        "access_log",
        "accessLog",
        Kind.STR,
        "Where the access log goes: - (stderr), off, or a file (relative to the folder of the "
        "file that sets it), appended to and reopened on SIGUSR1 (logrotate). corral serve "
        "--access-log PATH|-, --no-access-log.",
    ),
    _server(
        "access_log_format",
        "accessLogFormat",
        Kind.CHOICE,
        "The access log's format: combined (Apache's Combined Log Format), extended (combined, "
        "then the Host, the application, the request's duration and the application's time) "
        "or json (one JSON object per line); see docs/operating.md, Logs.",
        choices=("combined", "extended", "json"),
    ),
    _server(
        "log_level",
        "logLevel",
        Kind.CHOICE,
        "The server log's level (stderr): debug, info, warning or error. corral serve --log-level.",
        choices=("debug", "info", "warning", "error"),
    ),
    _server(
        "pid_file",
        "pidFile",
        Kind.PATH,
        "A file the host writes its process id to once it listens, removed at exit (relative "
        "to the folder of the file that sets it). A stale one is replaced; one naming another "
        "running Corral stops the start. corral serve --pid-file.",
    ),
    # The admin listener (corral.ops.admin: /metrics, /healthz, /readyz, the dashboard).
    _server(
        "admin",
        "admin",
        Kind.LISTEN,
        "Where the admin listener (Prometheus /metrics, /healthz, /readyz, the dashboard) "
        "listens: HOST:PORT, or a port alone for 127.0.0.1:PORT; unset: no admin listener. "
        "Read at start (a change needs a restart); `corral serve --admin` wins.",
    ),
    _server(
        "metrics_token",
        "metricsToken",
        Kind.STR,
        "A token that /metrics asks for (Authorization: Bearer TOKEN); unset (and no "
        "CORRAL_METRICS_TOKEN in the environment): /metrics is open to whoever reaches the "
        "admin listener.",
        secret=True,
    ),
    # --- TLS at the front (docs/tls.md) -------------------------------------------------------
    _server(
        "hsts",
        "hsts",
        Kind.HSTS,
        "Strict-Transport-Security sent with every site's responses over TLS (never over plain "
        'HTTP), e.g. "max-age=31536000; includeSubDomains"; a site\'s own hsts wins. "" = none.',
    ),
    _server(
        "tls_handshake_timeout",
        "tlsHandshakeTimeout",
        Kind.NUMBER,
        "Seconds a client of an https binding has to complete the TLS handshake; one that "
        "does not is disconnected (other clients are not affected).",
        minimum=0,
        above=True,
    ),
    _server(
        "tls_ticket_key_lifetime",
        "tlsTicketKeyLifetime",
        Kind.NUMBER,
        "Seconds after which each https listener takes fresh TLS contexts, and so new session "
        "ticket keys (OpenSSL keeps one random key per context and never rotates it): tickets "
        "issued before then no longer resume a session. Connections are not affected. 0 = "
        "never.",
        minimum=0,
    ),
    # --- users (issue 13, docs/tenants.md) ---------------------------------------------------
    _server(
        "user",
        "user",
        Kind.STR,
        "User the front drops to once it has bound its ports, when started as root "
        "(`corral serve --user`); it keeps only CAP_SETUID, CAP_SETGID, CAP_KILL and CAP_CHOWN, "
        "to start and stop applications as their own users (docs/security.md). Read at start.",
    ),
    _server(
        "group",
        "group",
        Kind.STR,
        "Group the front drops to with `user` (default: that user's primary group).",
    ),
    _server(
        "allow_root_apps",
        "allowRootApps",
        Kind.BOOL,
        "When Corral runs as root, let an application without a user run as root (with a "
        "warning at start and in corral check); false: refuse such an application.",
    ),
    # --- end of users ------------------------------------------------------------------------
    # --- HTTP/2 at the front (docs/http2.md) ------------------------------------------------
    _server(
        "http2_cleartext",
        "http2Cleartext",
        Kind.BOOL,
        "Serve HTTP/2 with prior knowledge on plain (http) bindings: a connection that opens "
        "with the HTTP/2 preface is served as HTTP/2, any other as HTTP/1.1. https bindings "
        "offer HTTP/2 through ALPN (h2) whatever this says.",
    ),
    _server(
        "http2_max_streams",
        "http2MaxStreams",
        Kind.INT,
        "Requests (streams) one HTTP/2 connection may have in flight at once "
        "(SETTINGS_MAX_CONCURRENT_STREAMS); a client that opens more loses the connection.",
        minimum=1,
    ),
    _server(
        "http2_stream_window",
        "http2StreamWindow",
        Kind.INT,
        "Bytes of request body one HTTP/2 stream may send ahead of its application "
        "(SETTINGS_INITIAL_WINDOW_SIZE): more is held back (no WINDOW_UPDATE) while the "
        "application does not read. Bounds the memory of uploads: streams x window per "
        "connection at most.",
        minimum=65535,
        maximum=2**31 - 1,
    ),
    _server(
        "http2_max_resets",
        "http2MaxResets",
        Kind.INT,
        "Streams an HTTP/2 client may cancel (RST_STREAM) within 10 seconds; past it the "
        "connection is closed with GOAWAY ENHANCE_YOUR_CALM (the rapid-reset attack, "
        "CVE-2023-44487).",
        minimum=1,
    ),
)

#: Pool settings no configuration file spells (the engines' are in `settings_engine`).
POOL_SETTINGS: tuple[Setting, ...] = (
    _pool(
        "connections_per_worker",
        Kind.INT,
        1,
        "Requests one worker serves at once (one connection each). By default an engine's "
        "threads for Corral's Python worker (more when an ASGI worker advertises more), 100 for "
        "HTTP backends, else 1.",
        PoolUse("connections_per_worker", Kind.INT, minimum=1),
    ),
    _pool(
        "queue_size",
        Kind.INT,
        100,
        "Requests that may wait for a worker; more get 503 with Retry-After (corral serve "
        "lets 1000 wait).",
        PoolUse("queue_size", Kind.INT, minimum=0),
    ),
    _pool(
        "queue_timeout",
        Kind.NUMBER,
        30.0,
        "Seconds a request may wait for a worker before it gets 503 (corral serve: the "
        "server's acquire_timeout).",
        PoolUse("queue_timeout", Kind.NUMBER, to_float, minimum=0, above=True),
    ),
    _pool(
        "start_timeout",
        Kind.NUMBER,
        30.0,
        "Seconds a new worker has to answer the readiness probe.",
        PoolUse("start_timeout", Kind.NUMBER, to_float, minimum=0, above=True),
    ),
)

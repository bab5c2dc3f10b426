"""The engine settings: `<engines|userEngines><add .../>` attributes and TOML `[engines.NAME]`.

Each `engine.X` fills `EngineConfig.X` (`declare.declare_engine`) and takes its default from that
field; the ones a pool acts on say which `PoolSettings` field they become (`PoolUse`).
"""

from __future__ import annotations

import enum

from corral.config.model import EngineConfig, EngineKind, Transport, WireProtocol
from corral.config.setting import (
    Kind,
    PoolUse,
    Scope,
    Setting,
    minutes_or_never,
    percent,
    seconds_or_never,
    to_float,
)
from corral.protocol.fastcgi.constants import MAX_PIPELINE_DEPTH

#: An engine with every default: the engine settings' defaults are read from it, so that each
#: default is written once (in `EngineConfig`).
ENGINE_DEFAULTS = EngineConfig(
    name="", kind=EngineKind.COMMAND, transport=Transport.NAMED_PIPE, protocol=WireProtocol.FASTCGI
)

_E = Scope.ENGINE


def _engine(
    field: str,
    zoo_name: str,
    kind: Kind,
    doc: str,
    *,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    above: bool = False,
    pool: PoolUse | None = None,
) -> Setting:
    """An engine setting: `engine.FIELD`, TOML key FIELD, the XML attribute `zoo_name`, default
    `EngineConfig`'s."""
    default = getattr(ENGINE_DEFAULTS, field)
    if isinstance(default, enum.Enum):
        default = default.value
    return Setting(
        f"engine.{field}",
        _E,
        field,
        zoo_name,
        kind,
        default,
        doc,
        choices=choices,
        minimum=minimum,
        maximum=maximum,
        above=above,
        pool=pool,
    )


ENGINE_SETTINGS: tuple[Setting, ...] = (
    # --- engines: each fills the EngineConfig field of its name (defaults from there) -------
    Setting(
        "engine.name",
        _E,
        "",
        "name",
        Kind.STR,
        None,
        "Engine id, referenced by a handler's scriptProcessor (TOML: the table name).",
    ),
    _engine(
        "display_name",
        "displayName",
        Kind.STR,
        "Friendly name shown by corral check.",
    ),
    _engine(
        "full_path",
        "fullPath",
        Kind.PATH,
        "Executable that starts a worker; %VAR% expanded. Ignored by Python engines, which "
        "run Corral's worker.",
    ),
    _engine(
        "arguments",
        "arguments",
        Kind.STR,
        "Command-line arguments (shell-style quoting); %VAR% expanded, %PORT%/%HOST%/%SOCKET% per "
        "worker.",
    ),
    _engine(
        "transport",
        "transport",
        Kind.CHOICE,
        "NamedPipe (a Unix socket at the worker's fd 0), tcp (a port from portLower..portUpper), "
        "unix (the command listens on a Unix socket at a private per-worker path: SOCKET / "
        "%SOCKET%) or tcp.service (connect to a running server at host:portLower).",
        choices=tuple(t.value for t in Transport),
    ),
    _engine(
        "protocol",
        "protocol",
        Kind.CHOICE,
        "Protocol spoken to the backend: fastcgi, http or fastcgi-php (php-cgi).",
        choices=tuple(p.value for p in WireProtocol),
    ),
    _engine(
        "host",
        "host",
        Kind.STR,
        "Address the TCP backend listens on (HOST / %HOST%); for tcp.service also "
        "unix:/path/to.sock, a running server's Unix socket (php-fpm's default).",
    ),
    _engine(
        "port_lower",
        "portLower",
        Kind.INT,
        "Lowest port picked for a tcp worker (for tcp.service: the service's port).",
        minimum=1,
        maximum=65535,
    ),
    _engine(
        "servers",
        "servers",
        Kind.STR,
        "Several running servers sharing a tcp.service's requests, host:port or unix:/path, "
        "separated by spaces or commas (replaces host/portLower). Least outstanding requests "
        "first; a server refusing connections, resetting them, or answering 5xx to idempotent "
        "requests twice in a row is taken out (a request that never reached it goes to another) "
        "and tried again after healthInterval seconds; maxInstances counts per server.",
    ),
    _engine(
        "health_check",
        "healthCheck",
        Kind.STR,
        'Active check of each tcp.service server every healthInterval seconds: "fastcgi" '
        "(FCGI_GET_VALUES answered), an HTTP path such as /healthz (2xx or 3xx wanted), or "
        ":PORT/path, that path on another port of each server's host (another Corral node's "
        "admin listener: :9100/readyz); empty: none (failures of requests alone take a server "
        "out).",
    ),
    _engine(
        "slow_start",
        "slowStart",
        Kind.NUMBER,
        "Seconds over which a tcp.service server that comes back gets from a tenth to its full "
        "share of requests (0: at once).",
        minimum=0,
    ),
    _engine(
        "port_upper",
        "portUpper",
        Kind.INT,
        "Highest port picked for a tcp worker.",
        minimum=1,
        maximum=65535,
    ),
    _engine(
        "min_instances",
        "minInstances",
        Kind.INT,
        "Workers kept running once the application has started (0: none when idle).",
        minimum=0,
        pool=PoolUse("min_instances", Kind.INT, minimum=0),
    ),
    _engine(
        "max_instances",
        "maxInstances",
        Kind.INT,
        "Most workers started under load; 0 = one per CPU core.",
        minimum=0,
        pool=PoolUse("max_instances", Kind.INT, minimum=0),
    ),
    _engine(
        "time_limit",
        "timeLimit",
        Kind.INT,
        "Recycle a worker after this many minutes (it finishes its requests first, its "
        "replacement starts at once; one worker per health round); 0 = never.",
        minimum=0,
        pool=PoolUse(
            "time_limit",
            Kind.NUMBER,
            minutes_or_never,
            minimum=0,
            above=True,
            optional=True,
            unit="seconds, not minutes",
        ),
    ),
    _engine(
        "memory_limit",
        "memoryLimit",
        Kind.INT,
        "Recycle a worker whose resident memory passes this many megabytes (checked every "
        "healthInterval seconds; it finishes its requests first); 0 = unlimited.",
        minimum=0,
        pool=PoolUse("memory_limit_mb", Kind.INT, minimum=0),
    ),
    _engine(
        "idle_timeout",
        "idleTimeout",
        Kind.INT,
        "Seconds a worker above minInstances may stay idle before it is stopped (as Passenger "
        "and IIS FastCGI: 300); 0 = never stop idle workers.",
        minimum=0,
        pool=PoolUse("idle_timeout", Kind.NUMBER, seconds_or_never, minimum=0, optional=True),
    ),
    _engine(
        "threads",
        "threads",
        Kind.INT,
        "Python engines: requests one worker serves at once, in threads. 0 (the default): as "
        "many as the load needs, found by Corral for each app (up to maxThreads; one for a "
        "CPU-bound app, many for an app that waits on databases or APIs: docs/scaling.md, "
        "Adaptive concurrency); a number fixes it.",
        minimum=0,
        maximum=1000,
    ),
    _engine(
        "max_threads",
        "maxThreads",
        Kind.INT,
        "Python engines with threads = 0: the most requests (threads) one worker serves at "
        "once; the worker starts them on demand and lets idle ones go. Ignored when threads "
        "is set.",
        minimum=1,
        maximum=1000,
        pool=PoolUse("max_threads_per_worker", Kind.INT, minimum=0, maximum=1000),
    ),
    _engine(
        "max_requests",
        "maxRequests",
        Kind.INT,
        "Recycle a worker after this many requests, plus a random jitter (maxRequestsJitter), "
        "so that workers do not all recycle at once; 0 = never.",
        minimum=0,
        pool=PoolUse("max_requests", Kind.INT, minimum=0),
    ),
    _engine(
        "max_requests_jitter",
        "maxRequestsJitter",
        Kind.INT,
        "Percent of maxRequests added at random to each worker's request limit.",
        minimum=0,
        maximum=100,
        pool=PoolUse(
            "max_requests_jitter",
            Kind.NUMBER,
            percent,
            minimum=0,
            maximum=1,
            unit="fractions (0.1 for 10 percent)",
        ),
    ),
    _engine(
        "pipeline_depth",
        "pipelineDepth",
        Kind.INT,
        "Python engines: when every worker is busy, how many requests (GET, HEAD or OPTIONS "
        "without a body) one worker's connection may carry at once, queued behind the one it "
        "serves, so that it finds its next request waiting instead of sleeping for it. Only "
        "as deep as about 5 ms of the app's typical work, never behind a request that has run "
        "that long (requests queued behind one that turns slow go to the next free worker); 1 "
        "= one request at a time (see docs/scaling.md).",
        minimum=1,
        maximum=MAX_PIPELINE_DEPTH,
        pool=PoolUse("pipeline_depth", Kind.INT, minimum=1, maximum=MAX_PIPELINE_DEPTH),
    ),
    _engine(
        "memory_reserve",
        "memoryReserve",
        Kind.INT,
        "Megabytes of the machine's available memory below which no worker is started (said "
        "in the log and the pool's status); 0 = no reserve.",
        minimum=0,
        pool=PoolUse("memory_reserve_mb", Kind.INT, minimum=0),
    ),
    _engine(
        "graceful_shutdown_timeout",
        "gracefulShutdownTimeout",
        Kind.INT,
        "Seconds a stopping worker may finish its requests before it is killed.",
        minimum=1,
        pool=PoolUse("graceful_shutdown_timeout", Kind.NUMBER, to_float, minimum=0, above=True),
    ),
    _engine(
        "health_interval",
        "healthInterval",
        Kind.NUMBER,
        "Seconds between a pool's health rounds: the machine's available memory, each "
        "worker's memory (memoryLimit), timeLimit, and probes of idle workers.",
        minimum=0,
        above=True,
        pool=PoolUse("health_interval", Kind.NUMBER, to_float, minimum=0, above=True),
    ),
    _engine(
        "probe_interval",
        "probeInterval",
        Kind.NUMBER,
        "Seconds a worker may sit idle (unused and unprobed) before a health round probes it "
        "(FastCGI: FCGI_GET_VALUES; HTTP: a connection).",
        minimum=0,
        above=True,
        pool=PoolUse("probe_interval", Kind.NUMBER, to_float, minimum=0, above=True),
    ),
    _engine(
        "probe_timeout",
        "probeTimeout",
        Kind.NUMBER,
        "Seconds a probed idle worker has to answer; one that does not is killed and replaced.",
        minimum=0,
        above=True,
        pool=PoolUse("probe_timeout", Kind.NUMBER, to_float, minimum=0, above=True),
    ),
    _engine(
        "request_buffering",
        "requestBuffering",
        Kind.CHOICE,
        "Read each request body whole before a worker is leased (in memory up to the server's "
        "request_buffer_memory, then in a temporary file) and send it with its CONTENT_LENGTH: "
        "on, off, or auto (on for protocol fastcgi-php, php-cgi and php-fpm, which read up to "
        "CONTENT_LENGTH and lose a chunked body without it; off for the others, which stream "
        "the body). On, a slow uploader holds no worker.",
        choices=("auto", "on", "off"),
    ),
    _engine(
        "enabled",
        "enabled",
        Kind.BOOL,
        "Whether applications may use the engine (Zoo 4; Zoo 3 used <switchboard>).",
    ),
    Setting(
        "engine.env",
        _E,
        "env",
        "environmentVariables",
        Kind.ENV,
        {},
        "Variables for every worker of the engine; applications override them.",
    ),
)

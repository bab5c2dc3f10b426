"""The one declaration of every configuration setting.

Each `Setting` names the value once for every spelling Corral reads: the key in Corral's TOML, the
attribute or variable in Helicon Zoo's XML (`applicationHost.config` engines, `web.config`
`<environmentVariables>`), its type, default and a one-line doc, and whether the runtime acts on it
yet. The readers validate against this table, `corral check` lists set values that are not in
effect from it, and `docs/configuration.md` is generated from it (`python -m corral.config.docgen`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from corral.config import convert
from corral.config.model import FrontSettings, Transport, WireProtocol


class Scope(enum.StrEnum):
    #: An engine: `<heliconZooServer><engines|userEngines><add .../>` or TOML `[engines.NAME]`.
    ENGINE = "engine"
    #: An application: a variable of `<application><environmentVariables>` (also TOML key).
    APP = "application"
    #: A site in the server TOML: `[sites.NAME]`.
    SITE = "site"
    #: A mount (IIS application) of a site: `[sites.NAME.apps."/path"]`.
    MOUNT = "mount"
    #: The server TOML's `[server]` table.
    SERVER = "server"


class Kind(enum.StrEnum):
    STR = "string"
    INT = "integer"
    #: A decimal number (seconds): 2, 2.5 or "2.5".
    NUMBER = "number"
    BOOL = "boolean"
    CHOICE = "choice"
    PATH = "path"
    PATH_LIST = "path list"
    #: Addresses or CIDR networks (or *): a list, or a `;`/`,`-separated string.
    ADDRESSES = "addresses"
    MASK = "file masks"
    VIRTUAL_PATH = "virtual path"
    BINDINGS = "bindings"
    ENV = "variables"
    SWITCHBOARD = "switchboard"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    scope: Scope
    #: Key in Corral's TOML ("" when TOML has no such key).
    toml_key: str
    #: Helicon Zoo / IIS spelling: an XML attribute for engines, a variable for applications.
    zoo_name: str
    kind: Kind
    default: object
    doc: str
    #: Whether the runtime acts on it yet; set-but-not-in-effect values are listed by check.
    in_effect: bool = True
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: The value must be greater than `minimum` (a timeout of 0 makes no sense).
    above: bool = False

    def convert(self, value: object) -> object:
        """The typed value, or ValueError with a message (the reader adds file, line, name)."""
        converter = _CONVERTERS.get(self.kind)
        if self.kind is Kind.CHOICE:
            return convert.to_choice(value, self.choices)
        if self.kind is Kind.INT:
            return convert.to_int(value, minimum=self.minimum, maximum=self.maximum)
        if self.kind is Kind.NUMBER:
            return convert.to_number(
                value, minimum=self.minimum, maximum=self.maximum, above=self.above
            )
        if converter is None:
            raise ValueError(f"{self.name} is not a scalar setting")
        return converter(value)


_CONVERTERS: dict[Kind, Callable[[object], object]] = {
    Kind.STR: convert.to_str,
    Kind.BOOL: convert.to_bool,
    Kind.PATH: convert.to_str,
    Kind.PATH_LIST: convert.to_list,
    Kind.ADDRESSES: convert.to_trusted_proxies,
    Kind.MASK: convert.to_mask,
    Kind.VIRTUAL_PATH: convert.to_virtual_path,
}

_E = Scope.ENGINE
_A = Scope.APP

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
    )


SETTINGS: tuple[Setting, ...] = (
    # --- engines ---------------------------------------------------------------------------
    Setting(
        "engine.name",
        _E,
        "",
        "name",
        Kind.STR,
        None,
        "Engine id, referenced by a handler's scriptProcessor (TOML: the table name).",
    ),
    Setting(
        "engine.display_name",
        _E,
        "display_name",
        "displayName",
        Kind.STR,
        "",
        "Friendly name shown by corral check.",
    ),
    Setting(
        "engine.full_path",
        _E,
        "full_path",
        "fullPath",
        Kind.PATH,
        "",
        "Executable that starts a worker; %VAR% expanded. Ignored by Python engines, which "
        "run Corral's worker.",
    ),
    Setting(
        "engine.arguments",
        _E,
        "arguments",
        "arguments",
        Kind.STR,
        "",
        "Command-line arguments (shell-style quoting); %VAR% expanded, %PORT%/%HOST% per worker.",
    ),
    Setting(
        "engine.transport",
        _E,
        "transport",
        "transport",
        Kind.CHOICE,
        "NamedPipe",
        "NamedPipe (a Unix socket at the worker's fd 0), tcp (a port from portLower..portUpper) "
        "or tcp.service (connect to a running server at host:portLower).",
        choices=tuple(t.value for t in Transport),
    ),
    Setting(
        "engine.protocol",
        _E,
        "protocol",
        "protocol",
        Kind.CHOICE,
        "fastcgi",
        "Protocol spoken to the backend: fastcgi, http or fastcgi-php (php-cgi).",
        choices=tuple(p.value for p in WireProtocol),
    ),
    Setting(
        "engine.host",
        _E,
        "host",
        "host",
        Kind.STR,
        "127.0.0.1",
        "Address the TCP backend listens on (HOST / %HOST%); for tcp.service also "
        "unix:/path/to.sock, a running server's Unix socket (php-fpm's default).",
    ),
    Setting(
        "engine.port_lower",
        _E,
        "port_lower",
        "portLower",
        Kind.INT,
        49152,
        "Lowest port picked for a tcp worker (for tcp.service: the service's port).",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "engine.port_upper",
        _E,
        "port_upper",
        "portUpper",
        Kind.INT,
        65535,
        "Highest port picked for a tcp worker.",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "engine.min_instances",
        _E,
        "min_instances",
        "minInstances",
        Kind.INT,
        1,
        "Workers kept running once the application has started (0: none when idle).",
        minimum=0,
    ),
    Setting(
        "engine.max_instances",
        _E,
        "max_instances",
        "maxInstances",
        Kind.INT,
        0,
        "Most workers started under load; 0 = one per CPU core.",
        minimum=0,
    ),
    Setting(
        "engine.time_limit",
        _E,
        "time_limit",
        "timeLimit",
        Kind.INT,
        0,
        "Recycle a worker after this many minutes (it finishes its requests first, its "
        "replacement starts at once; one worker per health round); 0 = never.",
        minimum=0,
    ),
    Setting(
        "engine.memory_limit",
        _E,
        "memory_limit",
        "memoryLimit",
        Kind.INT,
        0,
        "Recycle a worker whose resident memory passes this many megabytes (checked every "
        "healthInterval seconds; it finishes its requests first); 0 = unlimited.",
        minimum=0,
    ),
    Setting(
        "engine.idle_timeout",
        _E,
        "idle_timeout",
        "idleTimeout",
        Kind.INT,
        300,
        "Seconds a worker above minInstances may stay idle before it is stopped (as Passenger "
        "and IIS FastCGI: 300); 0 = never stop idle workers.",
        minimum=0,
    ),
    Setting(
        "engine.threads",
        _E,
        "threads",
        "threads",
        Kind.INT,
        1,
        "Python engines: requests one worker serves at once, in threads. 1 suits CPU-bound "
        "apps; I/O-bound apps (waiting on databases, APIs) want 16-64 (see docs/scaling.md).",
        minimum=1,
        maximum=1000,
    ),
    Setting(
        "engine.max_requests",
        _E,
        "max_requests",
        "maxRequests",
        Kind.INT,
        0,
        "Recycle a worker after this many requests, plus a random jitter (maxRequestsJitter), "
        "so that workers do not all recycle at once; 0 = never.",
        minimum=0,
    ),
    Setting(
        "engine.max_requests_jitter",
        _E,
        "max_requests_jitter",
        "maxRequestsJitter",
        Kind.INT,
        10,
        "Percent of maxRequests added at random to each worker's request limit.",
        minimum=0,
        maximum=100,
    ),
    Setting(
        "engine.pipeline_depth",
        _E,
        "pipeline_depth",
        "pipelineDepth",
        Kind.INT,
        16,
        "Python engines: when every worker is busy, how many requests (GET, HEAD or OPTIONS "
        "without a body) one worker's connection may carry at once, queued behind the one it "
        "serves, so that it finds its next request waiting instead of sleeping for it. Only "
        "as deep as about 5 ms of the app's typical work, never behind a request that has run "
        "that long (requests queued behind one that turns slow go to the next free worker); 1 "
        "= one request at a time (see docs/scaling.md).",
        minimum=1,
        maximum=16,
    ),
    Setting(
        "engine.memory_reserve",
        _E,
        "memory_reserve",
        "memoryReserve",
        Kind.INT,
        64,
        "Megabytes of the machine's available memory below which no worker is started (said "
        "in the log and the pool's status); 0 = no reserve.",
        minimum=0,
    ),
    Setting(
        "engine.graceful_shutdown_timeout",
        _E,
        "graceful_shutdown_timeout",
        "gracefulShutdownTimeout",
        Kind.INT,
        10,
        "Seconds a stopping worker may finish its requests before it is killed.",
        minimum=1,
    ),
    Setting(
        "engine.health_interval",
        _E,
        "health_interval",
        "healthInterval",
        Kind.NUMBER,
        5.0,
        "Seconds between a pool's health rounds: the machine's available memory, each "
        "worker's memory (memoryLimit), timeLimit, and probes of idle workers.",
        minimum=0,
        above=True,
    ),
    Setting(
        "engine.probe_interval",
        _E,
        "probe_interval",
        "probeInterval",
        Kind.NUMBER,
        30.0,
        "Seconds a worker may sit idle (unused and unprobed) before a health round probes it "
        "(FastCGI: FCGI_GET_VALUES; HTTP: a connection).",
        minimum=0,
        above=True,
    ),
    Setting(
        "engine.probe_timeout",
        _E,
        "probe_timeout",
        "probeTimeout",
        Kind.NUMBER,
        10.0,
        "Seconds a probed idle worker has to answer; one that does not is killed and replaced.",
        minimum=0,
        above=True,
    ),
    Setting(
        "engine.enabled",
        _E,
        "enabled",
        "enabled",
        Kind.BOOL,
        True,
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
    # --- applications (web.config variables) -----------------------------------------------
    Setting(
        "app.engine",
        _A,
        "engine",
        "scriptProcessor",
        Kind.STR,
        None,
        "Engine that runs the application (web.config: the handler's scriptProcessor).",
    ),
    Setting(
        "app.paths",
        _A,
        "paths",
        "path",
        Kind.PATH_LIST,
        ("*",),
        "URL patterns sent to the application: * or *.php style, tried in order "
        "(web.config: each handler's path).",
    ),
    Setting(
        "app.env",
        _A,
        "env",
        "environmentVariables",
        Kind.ENV,
        {},
        "Variables for the application's workers; %VAR% expanded; they override the engine's.",
    ),
    Setting(
        "app.pythonpath",
        _A,
        "pythonpath",
        "PYTHONPATH",
        Kind.PATH_LIST,
        (),
        "Module search path; ;-separated in web.config, relative entries are from the app folder.",
    ),
    Setting(
        "app.wsgi_app",
        _A,
        "wsgi_app",
        "WSGI_APP",
        Kind.STR,
        None,
        "WSGI callable as module.attr or module:attr (the worker's first choice).",
    ),
    Setting(
        "app.asgi_app",
        _A,
        "asgi_app",
        "ASGI_APP",
        Kind.STR,
        None,
        "ASGI 3 application as module:attr, served as ASGI whatever it looks like (before "
        "WSGI_APP; a WSGI_APP that is an ASGI app is detected and served as ASGI too).",
    ),
    Setting(
        "app.wsgi_handler",
        _A,
        "wsgi_handler",
        "WSGI_HANDLER",
        Kind.STR,
        None,
        "WSGI callable in wfastcgi's spelling (Zoo 4): module.attr, call syntax allowed.",
    ),
    Setting(
        "app.django_settings_module",
        _A,
        "django_settings_module",
        "DJANGO_SETTINGS_MODULE",
        Kind.STR,
        None,
        "Serve Django with this settings module when WSGI_APP and WSGI_HANDLER are unset.",
    ),
    Setting(
        "app.current_directory",
        _A,
        "current_directory",
        "CURRENT_DIRECTORY",
        Kind.PATH,
        None,
        "Working directory of the workers; default the application folder.",
    ),
    Setting(
        "app.virtual_env",
        _A,
        "virtual_env",
        "VIRTUAL_ENV",
        Kind.PATH,
        None,
        "Virtualenv whose bin/python runs the Python worker (else Corral's interpreter).",
    ),
    Setting(
        "app.deploy_file",
        _A,
        "deploy_file",
        "DEPLOY_FILE",
        Kind.PATH,
        None,
        "Script run before the application serves (deploy.py...), relative to the app folder.",
    ),
    Setting(
        "app.deploy_log",
        _A,
        "deploy_log",
        "DEPLOY_LOG",
        Kind.PATH,
        None,
        "File that receives the deploy script's output.",
    ),
    Setting(
        "app.deploy_timeout",
        _A,
        "deploy_timeout",
        "DEPLOY_TIMEOUT",
        Kind.INT,
        600,
        "Seconds the deploy script may run; past it, it is stopped and has failed.",
        minimum=1,
    ),
    Setting(
        "app.error_log_dir",
        _A,
        "error_log_dir",
        "ERROR_LOG_DIR",
        Kind.PATH,
        None,
        "Folder for the workers' error logs (NULL: none); never served as static files.",
    ),
    Setting(
        "app.error_log_max_kb",
        _A,
        "error_log_max_kb",
        "ERROR_LOG_MAX_KB",
        Kind.INT,
        10240,
        "Size in KiB at which an application's error log is rotated (app.log -> app.log.1...).",
        minimum=1,
    ),
    Setting(
        "app.error_log_files",
        _A,
        "error_log_files",
        "ERROR_LOG_FILES",
        Kind.INT,
        5,
        "Rotated error-log files kept besides the current one.",
        minimum=1,
    ),
    Setting(
        "app.watch_file_changes_mask",
        _A,
        "watch_file_changes_mask",
        "WATCH_FILE_CHANGES_MASK",
        Kind.MASK,
        (),
        "File masks (*.py) whose change restarts the workers.",
    ),
    Setting(
        "app.console_url",
        _A,
        "console_url",
        "CONSOLE_URL",
        Kind.STR,
        None,
        "Zoo's web console at <virtual path>/<value>.",
        in_effect=False,
    ),
    Setting(
        "app.worker_request_timeout",
        _A,
        "worker_request_timeout",
        "WORKER_REQUEST_TIMEOUT",
        Kind.INT,
        None,
        "Seconds a request may hold a worker: past it the client gets 504, the worker's Python "
        "stack goes to the app's log, and the worker is replaced.",
        minimum=1,
    ),
    Setting(
        "app.development_mode",
        _A,
        "development_mode",
        "DEVELOPMENT_MODE",
        Kind.BOOL,
        False,
        "Show the worker's traceback and log tail on the 'cannot start' page to every client "
        "(otherwise to loopback clients only).",
    ),
    Setting(
        "app.django_root",
        _A,
        "",
        "django.root",
        Kind.STR,
        None,
        "URL prefix zoofcgi stripped for Django; Corral sets SCRIPT_NAME to the virtual path "
        "instead, so it is passed through but changes nothing.",
        in_effect=False,
    ),
    Setting(
        "app.zoo_substitute_host",
        _A,
        "zoo_substitute_host",
        "ZOO_SUBSTITUTE_HOST",
        Kind.STR,
        None,
        "Host header sent to a shared tcp.service backend.",
        in_effect=False,
    ),
    Setting(
        "app.app_command",
        _A,
        "app_command",
        "APP_COMMAND",
        Kind.STR,
        None,
        "Command line of the backend for the generic http and fastcgi engines.",
    ),
    Setting(
        "app.php_ini",
        _A,
        "php_ini",
        "PHP_INI",
        Kind.PATH,
        None,
        "PHP engines: the application's php.ini (relative to the app folder); php-cgi runs "
        "with -c this file. Never served as a static file.",
    ),
    Setting(
        "app.php_fcgi_max_requests",
        _A,
        "php_fcgi_max_requests",
        "PHP_FCGI_MAX_REQUESTS",
        Kind.INT,
        10000,
        "PHP engines: requests a php-cgi worker serves before it exits on its own; Corral "
        "retires it after that many, so that no request reaches a worker about to exit "
        "(0: no limit).",
        minimum=0,
    ),
    # --- sites and mounts (server TOML) -----------------------------------------------------
    Setting(
        "site.bindings",
        Scope.SITE,
        "bindings",
        "bindings",
        Kind.BINDINGS,
        (),
        'Where the site listens: "address:port:host" strings (IIS) or tables '
        "{address, port, hosts}; no host = every host on that address and port.",
    ),
    Setting(
        "site.switchboard",
        Scope.SITE,
        "switchboard",
        "switchboard",
        Kind.SWITCHBOARD,
        {},
        'Engines the site may use: {"*" = false, "python.3.x.wsgi" = true}.',
    ),
    Setting(
        "mount.physical_path",
        Scope.MOUNT,
        "physical_path",
        "physicalPath",
        Kind.PATH,
        None,
        "Folder of the application at this virtual path (holds its web.config/corral.toml).",
    ),
    Setting(
        "server.application_host",
        Scope.SERVER,
        "application_host",
        "applicationHost.config",
        Kind.PATH,
        None,
        "Helicon's applicationHost.config to read <heliconZooServer> from.",
    ),
    _server(
        "trusted_proxies",
        "trustedProxies",
        Kind.ADDRESSES,
        "Client addresses or CIDR networks (* = any) whose X-Forwarded-For/-Proto/-Host and "
        "Forwarded fields reach HTTP backends; from other clients those fields are replaced.",
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
        "show_errors_to_loopback",
        "showErrorsToLoopback",
        Kind.BOOL,
        "Show a failing application's error output (its traceback) on 503 pages to loopback "
        "clients (127.0.0.1, ::1).",
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
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def by_scope(scope: Scope) -> tuple[Setting, ...]:
    return tuple(setting for setting in SETTINGS if setting.scope is scope)


#: Engine XML attribute -> setting.
ENGINE_BY_ATTRIBUTE: dict[str, Setting] = {
    s.zoo_name: s for s in by_scope(Scope.ENGINE) if s.kind is not Kind.ENV
}
#: Engine TOML key -> setting.
ENGINE_BY_TOML: dict[str, Setting] = {s.toml_key: s for s in by_scope(Scope.ENGINE) if s.toml_key}
#: Application variable name (as in web.config) -> setting; the variables Corral interprets.
APP_BY_VARIABLE: dict[str, Setting] = {
    s.zoo_name: s
    for s in by_scope(Scope.APP)
    if s.kind is not Kind.ENV and s.name not in ("app.engine", "app.paths")
}
#: Front-server settings (FrontSettings fields): `[server]` TOML key -> setting.
SERVER_BY_TOML: dict[str, Setting] = {
    s.toml_key: s for s in by_scope(Scope.SERVER) if s.name != "server.application_host"
}
#: Front-server settings: `<heliconZooServer>` attribute -> setting.
SERVER_BY_ATTRIBUTE: dict[str, Setting] = {s.zoo_name: s for s in SERVER_BY_TOML.values()}
#: Application TOML key -> setting.
APP_BY_TOML: dict[str, Setting] = {s.toml_key: s for s in by_scope(Scope.APP) if s.toml_key}

#: Values of engine settings the runtime implements (anything else is listed as not in effect).
#: (`corral.engines.backend_for` is what runs them; it refuses the others with a clear error.)
TRANSPORTS_IN_EFFECT: frozenset[Transport] = frozenset(
    {Transport.NAMED_PIPE, Transport.TCP, Transport.TCP_SERVICE}
)
PROTOCOLS_IN_EFFECT: frozenset[WireProtocol] = frozenset(
    {WireProtocol.FASTCGI, WireProtocol.FASTCGI_PHP, WireProtocol.HTTP}
)

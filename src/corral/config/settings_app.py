"""The application settings (web.config variables, TOML `[apps.NAME]`), and the sites' and
mounts' of the server TOML."""

from __future__ import annotations

from corral.config.setting import Kind, PoolUse, Scope, Setting, seconds_or_never

_A = Scope.APP
#: WARM_UP_REQUESTS's default (bench/README.md, "Preloaded workers: warm-up requests").
WARM_UP_REQUESTS_DEFAULT = 10

APP_SETTINGS: tuple[Setting, ...] = (
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
        "Virtualenv whose bin/python runs the Python worker (unset: Corral's interpreter). "
        "It may not exist yet when DEPLOY_FILE is set: the deploy script, run under the "
        "engine's interpreter until then, must make it (a run that exits 0 without it has "
        "failed), and the workers started after it use it. One without bin/python otherwise "
        "(made on Windows) is an error.",
    ),
    Setting(
        "app.deploy_file",
        _A,
        "deploy_file",
        "DEPLOY_FILE",
        Kind.PATH,
        None,
        "Script run before the application serves (deploy.py...), relative to the app folder; "
        "a file that does not exist is an error.",
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
        "Folder for the workers' error logs (NULL: none); never served as static files. For "
        "the bundled example (a site inside Corral's package), the folder is under the state "
        "directory instead: $XDG_STATE_HOME/corral/examples/hello/log (~/.local/state/... by "
        "default, else a corral-UID folder in the temp directory); DEPLOY_LOG likewise.",
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
        "The application's web console (docs/console.md): a terminal in the browser running "
        "a shell with the app's environment, at <virtual path>/<value> (a leading slash is "
        "tolerated); only for clients with the admin token, and not where the switchboard's "
        "console entry is Disabled. Unset: no console.",
    ),
    Setting(
        "app.console_idle_timeout",
        _A,
        "console_idle_timeout",
        "CONSOLE_IDLE_TIMEOUT",
        Kind.NUMBER,
        900,
        "Seconds a web console session may pass with no terminal input or output before its "
        "shell and every process of its session are killed and the session closed.",
        minimum=0,
        above=True,
    ),
    Setting(
        "app.worker_request_timeout",
        _A,
        "worker_request_timeout",
        "WORKER_REQUEST_TIMEOUT",
        Kind.INT,
        300,
        "Seconds a request may hold a worker: past it the client gets 504, the worker's Python "
        "stack goes to the app's log, and the worker is replaced (as when the front's "
        "response_timeout gives up on it). 0: no limit (an app that streams responses for "
        "longer). A WebSocket (any 101 tunnel) has no request timeout.",
        minimum=0,
        pool=PoolUse(
            "request_timeout",
            Kind.NUMBER,
            seconds_or_never,
            minimum=0,
            above=True,
            optional=True,
        ),
    ),
    Setting(
        "app.development_mode",
        _A,
        "development_mode",
        "DEVELOPMENT_MODE",
        Kind.BOOL,
        False,
        "Show the worker's traceback and log tail on the 'cannot start' page, and a deploy "
        "script's output, to every client (otherwise to local clients only), and the service "
        "information on the page of a site with no application; and answer an exception "
        "raised during a request from a local client (loopback, not forwarded) with Corral's "
        "Python worker's development page (the traceback with each frame's local variables) "
        "instead of the plain 500. Never in production.",
    ),
    Setting(
        "app.django_root",
        _A,
        "",
        "django.root",
        Kind.STR,
        None,
        "URL prefix zoofcgi stripped from PATH_INFO for Django. Corral sets SCRIPT_NAME to the "
        "virtual path and PATH_INFO to the rest, which is what the usual %APPL_VIRTUAL_PATH% "
        "asked for (corral check says so); another value is passed through but strips "
        "nothing (listed as not in effect).",
    ),
    Setting(
        "app.zoo_substitute_host",
        _A,
        "zoo_substitute_host",
        "ZOO_SUBSTITUTE_HOST",
        Kind.STR,
        None,
        "HTTP engines: the Host header sent to the backend instead of the client's (which "
        "goes in X-Forwarded-Host), as Zoo 4 did for a shared tcp.service server (Tomcat) that "
        "picks the application by host name; %INSTANCE_ID% in it is 0. FastCGI engines: not "
        "in effect (listed by corral check).",
    ),
    Setting(
        "app.error_log_level",
        _A,
        "error_log_level",
        "ERROR_LOG_LEVEL",
        Kind.CHOICE,
        None,
        "Python engines: the level from which the application's logging records go to the "
        "worker's stderr, hence the application's log (ERROR_LOG_DIR) and the host's: Corral's "
        "worker sets the root logger's level and a stderr handler before it imports the "
        "application (an application that configures logging itself decides). Other engines: "
        "not in effect (listed by corral check).",
        choices=("debug", "info", "warning", "error", "critical"),
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
    Setting(
        "app.request_buffering",
        _A,
        "request_buffering",
        "REQUEST_BUFFERING",
        Kind.CHOICE,
        "auto",
        "Request buffering for this application: on, off, or auto (the engine's "
        "requestBuffering): read each request body whole before a worker is leased and send "
        "it with its CONTENT_LENGTH (see docs/buffering.md).",
        choices=("auto", "on", "off"),
    ),
    Setting(
        "app.preload",
        _A,
        "preload",
        "PRELOAD",
        Kind.CHOICE,
        "auto",
        "Corral's Python worker: import the application once in a template process and fork "
        "its workers from it (copy-on-write memory, a new worker in milliseconds; "
        'docs/scaling.md, "Preloaded workers"). auto: when the app may run more than one '
        "worker (maxInstances other than 1) on Linux; on; off: start each worker with its own "
        "import. An app whose import starts threads is never forked.",
        choices=("auto", "on", "off"),
    ),
    Setting(
        "app.worker_scheduling",
        _A,
        "worker_scheduling",
        "WORKER_SCHEDULING",
        Kind.CHOICE,
        "batch",
        "Corral's Python worker, Linux: batch runs its threads under SCHED_BATCH, so that a "
        "worker woken for a request does not preempt the front (less CPU per request when the "
        "cores are busy, a longer tail of latency when they are full: bench/README.md, "
        '"Performance II (session 7)"); normal keeps the default policy.',
        choices=("batch", "normal"),
    ),
    Setting(
        "app.hook_app_start",
        _A,
        "hook_app_start",
        "HOOK_APP_START",
        Kind.STR,
        None,
        "Server hook (module:function, called with no arguments) run once the app is "
        "imported: in the template with preloading (once), else in each worker.",
    ),
    Setting(
        "app.warm_up",
        _A,
        "warm_up",
        "WARM_UP",
        Kind.WARM_UP,
        None,
        "Preloaded workers (Corral's Python worker, a WSGI app): a GET the template sends "
        "through the app, in its own process, before it forks the workers (/path?query, or "
        "http://host/path to name the Host header; SCRIPT_NAME is the app's virtual path), so "
        "that what the app builds at its first request and the code a request runs are "
        "shared by every worker instead of copied into each (less memory per worker). It "
        "runs the app's code in the template: a GET with side effects has them, and a "
        "connection the app opens there is inherited by every worker (close it in "
        "hook_after_fork). A non-2xx answer or an exception is logged and the workers are "
        "forked all the same; a warm-up unanswered near the start timeout makes the template "
        'give up preloading (docs/scaling.md, "Warm-up requests").',
    ),
    Setting(
        "app.warm_up_requests",
        _A,
        "warm_up_requests",
        "WARM_UP_REQUESTS",
        Kind.INT,
        WARM_UP_REQUESTS_DEFAULT,
        "How many times the template sends the warm_up request (Python 3.11 specialises a "
        "function's code after it has run a few times: code run once at the warm-up is "
        "still rewritten in each worker).",
        minimum=1,
        maximum=1000,
    ),
    Setting(
        "app.hook_after_fork",
        _A,
        "hook_after_fork",
        "HOOK_AFTER_FORK",
        Kind.STR,
        None,
        "Server hook (module:function) run in each worker forked from the template, before it "
        "serves: close connections the template opened, reseed generators.",
    ),
    Setting(
        "app.hook_worker_exit",
        _A,
        "hook_worker_exit",
        "HOOK_WORKER_EXIT",
        Kind.STR,
        None,
        "Server hook (module:function) run in a worker that is stopped (retired, restarted, "
        "scaled down, shut down), after its last request.",
    ),
)

#: Sites and mounts (server TOML).
SITE_SETTINGS: tuple[Setting, ...] = (
    # --- sites and mounts (server TOML) ----------------------------------------------------
    Setting(
        "site.bindings",
        Scope.SITE,
        "bindings",
        "bindings",
        Kind.BINDINGS,
        (),
        'Where the site listens: "address:port:host" strings (IIS) or tables '
        "{address, port, hosts, protocol, certificate, key}; no host = every host on that "
        'address and port. protocol = "https" serves TLS with the PEM certificate (chain) and '
        "key named (paths relative to the file; see docs/tls.md).",
    ),
    Setting(
        "site.https_redirect",
        Scope.SITE,
        "https_redirect",
        "hsts redirectHttpToHttps",
        Kind.BOOL,
        False,
        "Answer the site's plain HTTP requests with a 308 to the same URL over https, on the "
        "port of its first https binding (the site needs one). applicationHost.config: the "
        'site\'s <hsts redirectHttpToHttps="true"/> (IIS 10).',
    ),
    Setting(
        "site.hsts",
        Scope.SITE,
        "hsts",
        "hsts max-age includeSubDomains preload",
        Kind.HSTS,
        None,
        "Strict-Transport-Security for this site's TLS responses (default: the server's hsts); "
        '"" = none. applicationHost.config: the site\'s <hsts enabled="true" max-age="N" '
        'includeSubDomains="true" preload="true"/> (IIS 10).',
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
)

_T = Scope.TENANT

#: Who an application runs as and the hard limits on what it may use (docs/tenants.md). Only the
#: administrator's files spell them (the server TOML's site and mount tables, applicationHost.
#: config's application pools): an application's own web.config cannot choose its user or
#: raise its limits. Each fills the `Tenancy` field of its name.
TENANT_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "tenant.user",
        _T,
        "user",
        "processModel userName",
        Kind.STR,
        None,
        "User the application's workers and deploy script run as (needs Corral started as "
        "root): its supplementary groups, HOME from its passwd entry, and a private TMPDIR. "
        "Unset: the user Corral runs as (a warning when that is root, a refusal with "
        "[server] allow_root_apps = false).",
    ),
    Setting(
        "tenant.group",
        _T,
        "group",
        "processModel groupName",
        Kind.STR,
        None,
        "Primary group of the application's processes; default the user's own primary group.",
    ),
    Setting(
        "tenant.memory_hard_limit",
        _T,
        "memory_hard_limit",
        "memoryHardLimit",
        Kind.INT,
        0,
        "Megabytes of memory for all of the application's processes together (cgroup "
        "memory.max / memory.limit_in_bytes); past it the kernel kills a worker, which the pool "
        "replaces like a crash ('killed by the memory limit'). Without cgroups: an address-space "
        "limit per process (RLIMIT_AS). memoryLimit (engine) stays the soft, recycling limit "
        "per worker.",
        minimum=0,
    ),
    Setting(
        "tenant.cpu_quota",
        _T,
        "cpu_quota",
        "cpuQuota",
        Kind.INT,
        0,
        "CPU time for all of the application's processes together, in percent of one core "
        "(200 = two cores; cgroup cpu.max / cpu.cfs_quota_us). Needs cgroups.",
        minimum=0,
    ),
    Setting(
        "tenant.max_processes",
        _T,
        "max_processes",
        "maxProcesses",
        Kind.INT,
        0,
        "Processes and threads the application may have at once (cgroup pids.max): a fork "
        "bomb stops there. Without cgroups: RLIMIT_NPROC of the application's user.",
        minimum=0,
    ),
    Setting(
        "tenant.max_open_files",
        _T,
        "max_open_files",
        "maxOpenFiles",
        Kind.INT,
        0,
        "Open files per process of the application (RLIMIT_NOFILE, soft and hard).",
        minimum=0,
    ),
)

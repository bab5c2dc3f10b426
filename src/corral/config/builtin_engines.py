"""Built-in engines, and the Helicon Zoo engine names that resolve to them.

Real Zoo web.config files name engines such as `python.2.7.wsgi`, `python.2.7.pipe` or
`python.3.4.wfastcgi`. Off Windows they all run on Corral's own Python worker (FastCGI over a Unix
socket at fd 0); the loader adds a notice naming the interpreter actually used. `http` and
`fastcgi` are generic engines for any command given a port (`%PORT%`) or an fd-0 socket: the
application's APP_COMMAND is the command. `nodejs.http`, `php.fastcgi`, `ruby.rack`,
`ruby.puma`, `perl.psgi` and `perl.psgi.fastcgi` run those stacks' own servers (docs/engines.md);
which transports and protocols the runtime implements is in `settings.TRANSPORTS_IN_EFFECT`.
"""

from __future__ import annotations

import re

from corral.config.model import EngineConfig, EngineKind, EnvVar, Transport, WireProtocol

#: The native name of Corral's Python worker engine.
PYTHON = "python"
#: What PHP runs: never served as static files from a folder a PHP engine serves.
PHP_SOURCE_SUFFIXES = (".php", ".phtml", ".inc")

_PYTHON = EngineConfig(
    name=PYTHON,
    display_name="Corral Python worker (WSGI or ASGI over FastCGI)",
    kind=EngineKind.PYTHON_WORKER,
    transport=Transport.NAMED_PIPE,
    protocol=WireProtocol.FASTCGI,
    source_suffixes=(".py", ".pyc", ".pyo", ".pyd", ".pyw"),
)

BUILT_IN: tuple[EngineConfig, ...] = (
    _PYTHON,
    EngineConfig(
        name="fastcgi",
        display_name="Any FastCGI responder on an fd-0 socket (APP_COMMAND)",
        kind=EngineKind.COMMAND,
        transport=Transport.NAMED_PIPE,
        protocol=WireProtocol.FASTCGI,
    ),
    EngineConfig(
        name="http",
        display_name="Any HTTP server listening on %PORT% (APP_COMMAND)",
        kind=EngineKind.COMMAND,
        transport=Transport.TCP,
        protocol=WireProtocol.HTTP,
    ),
    EngineConfig(
        name="nodejs.http",
        display_name="Node.js over HTTP",
        kind=EngineKind.COMMAND,
        transport=Transport.TCP,
        protocol=WireProtocol.HTTP,
        full_path="node",
        arguments='"%APP_WORKER%"',
        env=(
            EnvVar("APP_WORKER", "%APPL_PHYSICAL_PATH%/server.js"),
            EnvVar("NODE_PATH", "%APPL_PHYSICAL_PATH%/node_modules"),
        ),
        source_suffixes=(".js", ".mjs", ".cjs", ".ts"),
    ),
    EngineConfig(
        name="php.fastcgi",
        display_name="PHP (php-cgi over FastCGI)",
        kind=EngineKind.COMMAND,
        transport=Transport.NAMED_PIPE,
        protocol=WireProtocol.FASTCGI_PHP,
        full_path="php-cgi",
        env=(EnvVar("PHP_FCGI_MAX_REQUESTS", "10000"), EnvVar("PHP_FCGI_CHILDREN", "0")),
        source_suffixes=PHP_SOURCE_SUFFIXES,
    ),
    # Ruby: a Rack application (config.ru) under its own HTTP server. rackup picks the best
    # server installed (puma, when it is); ruby.puma names puma itself.
    EngineConfig(
        name="ruby.rack",
        display_name="Ruby Rack application over HTTP (rackup)",
        kind=EngineKind.COMMAND,
        transport=Transport.TCP,
        protocol=WireProtocol.HTTP,
        full_path="rackup",
        arguments='"%RACK_CONFIG%" --host %HOST% --port %PORT% --env %RACK_ENV%',
        env=(
            EnvVar("RACK_CONFIG", "%APPL_PHYSICAL_PATH%/config.ru"),
            EnvVar("RACK_ENV", "production"),
        ),
        source_suffixes=(".rb", ".ru"),
    ),
    EngineConfig(
        name="ruby.puma",
        display_name="Ruby Rack application over HTTP (puma)",
        kind=EngineKind.COMMAND,
        transport=Transport.TCP,
        protocol=WireProtocol.HTTP,
        full_path="puma",
        arguments='--bind tcp://%HOST%:%PORT% --environment %RACK_ENV% "%RACK_CONFIG%"',
        env=(
            EnvVar("RACK_CONFIG", "%APPL_PHYSICAL_PATH%/config.ru"),
            EnvVar("RACK_ENV", "production"),
        ),
        source_suffixes=(".rb", ".ru"),
    ),
    # Perl: a PSGI application (app.psgi) under plackup, over HTTP or FastCGI on fd 0.
    EngineConfig(
        name="perl.psgi",
        display_name="Perl PSGI application over HTTP (plackup)",
        kind=EngineKind.COMMAND,
        transport=Transport.TCP,
        protocol=WireProtocol.HTTP,
        full_path="plackup",
        arguments='--host %HOST% --port %PORT% --env %PLACK_ENV% "%PSGI_WORKER%"',
        env=(
            EnvVar("PSGI_WORKER", "%APPL_PHYSICAL_PATH%/app.psgi"),
            EnvVar("PLACK_ENV", "deployment"),
        ),
        source_suffixes=(".pl", ".pm", ".psgi"),
    ),
    EngineConfig(
        name="perl.psgi.fastcgi",
        display_name="Perl PSGI application over FastCGI (plackup -s FCGI)",
        kind=EngineKind.COMMAND,
        transport=Transport.NAMED_PIPE,
        protocol=WireProtocol.FASTCGI,
        full_path="plackup",
        # FCGI serves the socket at fd 0 itself; no process manager (the pool is one).
        arguments='-s FCGI --manager= --env %PLACK_ENV% "%PSGI_WORKER%"',
        env=(
            EnvVar("PSGI_WORKER", "%APPL_PHYSICAL_PATH%/app.psgi"),
            EnvVar("PLACK_ENV", "deployment"),
        ),
        source_suffixes=(".pl", ".pm", ".psgi"),
    ),
)

#: Zoo engine names that mean "Python" (python.2.7.wsgi, python.3.x.pipe, python.3.4.wfastcgi...).
_PYTHON_ALIAS = re.compile(r"python(\.\d+(\.\d+|\.x)?)?\.[a-z0-9_.-]+", re.IGNORECASE)
#: Zoo engine names that mean "PHP over FastCGI" (php.5.2.pipe, php.7.x.fastcgi...).
_PHP_ALIAS = re.compile(r"php(\.\d+(\.\d+|\.x)?)?\.(pipe|fastcgi|cgi)", re.IGNORECASE)
#: Zoo engine names that mean "a Rack application" (ruby.1.9.pipe ran zack.rb, a Rack server).
_RUBY_ALIAS = re.compile(r"ruby(\.\d+(\.\d+|\.x)?)?\.(pipe|rack|http)\d*", re.IGNORECASE)
#: Zoo engine names that mean "Node.js over HTTP" (nodejs.http4...).
_NODE_ALIAS = re.compile(r"node(js)?(\.\d+(\.\d+|\.x)?)?\.http\d*", re.IGNORECASE)
#: Zoo 4's engine ids (a `.zoo` file's selected-engine, its repository's engine feeds):
#: Python34.FCGI.Engine, Python27.HTTP.Engine, Php55Engine, NodejsEngine, Ruby.2.3.FCGI.Engine.
_ZOO4_PYTHON = re.compile(r"python\d*\.(fcgi|http)\.engine", re.IGNORECASE)
_ZOO4_PHP = re.compile(r"php\d*\.?engine", re.IGNORECASE)
_ZOO4_NODE = re.compile(r"node(js)?\.?(http\.)?engine", re.IGNORECASE)
_ZOO4_RUBY = re.compile(r"ruby(\.\d+)*\.(fcgi|http)\.engine", re.IGNORECASE)


def built_in(name: str) -> EngineConfig | None:
    """The built-in engine declared under `name`, or the one a Zoo engine name stands for.

    An alias comes back renamed to the name asked for, so that each application reports the
    engine it named.
    """
    for engine in BUILT_IN:
        if engine.name == name:
            return engine
    target: str | None = None
    if _PYTHON_ALIAS.fullmatch(name) or _ZOO4_PYTHON.fullmatch(name):
        target = PYTHON
    elif _PHP_ALIAS.fullmatch(name) or _ZOO4_PHP.fullmatch(name):
        target = "php.fastcgi"
    elif _NODE_ALIAS.fullmatch(name) or _ZOO4_NODE.fullmatch(name):
        target = "nodejs.http"
    elif _RUBY_ALIAS.fullmatch(name) or _ZOO4_RUBY.fullmatch(name):
        target = "ruby.rack"
    if target is None:
        return None
    for engine in BUILT_IN:
        if engine.name == target:
            return _renamed(engine, name)
    return None  # pragma: no cover - every target above is declared


def _renamed(engine: EngineConfig, name: str) -> EngineConfig:
    from dataclasses import replace

    return replace(engine, name=name, origin=f"built-in ({engine.name})")


def source_suffixes(engine: EngineConfig) -> tuple[str, ...]:
    """The files an engine executes: its declared ones; for a declared engine that speaks
    fastcgi-php (a php-fpm service) without any, PHP's."""
    if not engine.source_suffixes and engine.protocol is WireProtocol.FASTCGI_PHP:
        return PHP_SOURCE_SUFFIXES
    return engine.source_suffixes


def is_python_alias(name: str) -> bool:
    return name != PYTHON and bool(_PYTHON_ALIAS.fullmatch(name) or _ZOO4_PYTHON.fullmatch(name))

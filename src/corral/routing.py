"""Pure request routing: Host header, then the longest virtual-path prefix, then the handlers.

    router = Router(server_config)
    route = router.match(host_header, path)          # path: percent-decoded, no query string
    if route is None:            -> 404 (no site answers this host / port)
    elif route.app is None:      -> a static file:
                                    corral.static.resolve(route.mount.static, route.path_info)
    else:                        -> the app's pool, with SCRIPT_NAME = route.script_name and
                                    PATH_INFO = route.path_info

Sites: a site whose binding names the host exactly wins, then a `*.example.com` wildcard (the
longest), then a site with a binding that names no host. With `port=`, only bindings on that port
count. Mounts: the longest virtual path that is the path or a prefix of it on a segment boundary
(`/blog` matches `/blog` and `/blog/x`, never `/blogger`). Handlers: the deepest folder scope that
contains the path decides; its handlers are tried in order, the pattern matched (as IIS does,
case-insensitively) against the last path segment (a pattern with a "/", such as `api/*`, against
the path relative to the mount); the first match wins; none = static.
Matching of virtual paths and folders is case-sensitive, as file systems here are.

File handlers (any pattern but `*` without a "/": `*.php`, `index.php`) name a script file, as
IIS's `*.php` mapping with `allowPathInfo` does: when the last segment does not match, the first
segment from the left that does ends the script, and the rest is the script's PATH_INFO
(`/index.php/extra/path` -> script `/index.php`, path info `/extra/path`; `Route.script` and
`Route.script_path_info`). A folder URL (ending in "/", or the mount itself) that no handler maps
gets a default document: the first of the mount's default documents
(`mount.static.default_documents`: `model.DEFAULT_DOCUMENTS` unless its web.config's
`<defaultDocument>` says otherwise) that a file handler maps and that
exists as a file in the folder (`/dir/` -> `/dir/index.php`); the others (`index.html`...) are
`corral.static`'s to serve. That check is the only file system access here: one `stat` per
candidate, for folder URLs of mounts with file handlers only.

`host` and `path` may be `str` or `bytes`. The front's bytes (the path percent-decoded, dot
segments removed: `corral.front.target.decode_path`) are matched byte for byte; a `str` path is
taken as text and matched by its UTF-8 bytes. `Route.script_name`/`path_info` are "WSGI strings"
(each byte one latin-1 character, as PEP 3333 wants); `script_name_bytes`/`path_info_bytes` give
the bytes back.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass

from corral.config.model import (
    AppConfig,
    Handler,
    HandlerScope,
    Mount,
    ServerConfig,
    SiteConfig,
)


@dataclass(frozen=True, slots=True)
class Route:
    site: SiteConfig
    mount: Mount
    #: None: no handler maps this path; serve it as a static file from `mount.static`.
    app: AppConfig | None
    handler: Handler | None
    #: "" for the root mount, else the mount's virtual path ("/blog"), as a WSGI string.
    script_name: str
    #: The rest of the path ("" when the request is exactly the virtual path), as a WSGI string.
    path_info: str
    #: File handlers (`*.php`): the script's path below the mount ("/dir/index.php", also for a
    #: default document); "" for whole-application handlers (`*`).
    script: str = ""
    #: File handlers: what follows the script in the path ("/extra/path" or "").
    script_path_info: str = ""

    @property
    def script_name_bytes(self) -> bytes:
        return self.script_name.encode("latin-1")

    @property
    def path_info_bytes(self) -> bytes:
        return self.path_info.encode("latin-1")

    @property
    def script_bytes(self) -> bytes:
        return self.script.encode("latin-1")

    @property
    def script_path_info_bytes(self) -> bytes:
        return self.script_path_info.encode("latin-1")


def wsgi_string(value: str | bytes) -> str:
    """Bytes as latin-1 text (each byte one character); text first encoded as UTF-8."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value.encode("utf-8").decode("latin-1")


def normalize_host(host: str | bytes | None) -> str:
    """Host header -> lower-case name without port, brackets or trailing dot."""
    if not host:
        return ""
    if isinstance(host, bytes):
        host = host.decode("latin-1")
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _handler_matches(pattern: str, path: str) -> bool:
    """IIS's `path`: matched against the last segment, or (with a "/") the whole relative path."""
    if pattern == "*":
        return True
    if "/" in pattern:
        subject = path.lstrip("/")
        pattern = pattern.lstrip("/")
    else:
        subject = path.rstrip("/").rpartition("/")[2]
    return fnmatch.fnmatchcase(subject.lower(), pattern.lower())


def is_file_pattern(pattern: str) -> bool:
    """A pattern naming script files (`*.php`, `index.php`), not a whole application (`*`)."""
    return pattern != "*" and "/" not in pattern


def _script_end(pattern: str, path: str) -> int:
    """Where the script named by a file pattern ends in `path`, or -1 when no segment matches.

    The first matching segment from the left ends the script, as Apache and IIS find the
    script of `/a.php/extra`; a folder URL's last segment (`/a.php/`) is not a script by
    itself, so its trailing "/" becomes the path info.
    """
    lowered = pattern.lower()
    start = 1 if path.startswith("/") else 0
    size = len(path)
    while start < size:
        end = path.find("/", start)
        if end < 0:
            end = size
        if end > start and fnmatch.fnmatchcase(path[start:end].lower(), lowered):
            return end
        start = end + 1
    return -1


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class _CompiledMount:
    __slots__ = ("apps", "mount", "scopes", "virtual_path")

    def __init__(self, mount: Mount, site: SiteConfig) -> None:
        self.mount = mount
        self.virtual_path = wsgi_string(mount.virtual_path)
        # Deepest folder first.
        self.scopes: list[tuple[str, HandlerScope]] = sorted(
            ((wsgi_string(scope.folder), scope) for scope in mount.scopes),
            key=lambda item: item[0].count("/") + bool(item[0]),
            reverse=True,
        )
        self.apps = {app.name: app for app in site.apps if app.virtual_path == mount.virtual_path}


class _CompiledSite:
    __slots__ = ("mounts", "site")

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.mounts = sorted(
            (_CompiledMount(mount, site) for mount in site.mounts),
            key=lambda compiled: len(compiled.mount.virtual_path),
            reverse=True,
        )


class Router:
    def __init__(
        self, config: ServerConfig, *, is_file: Callable[[str], bool] = os.path.isfile
    ) -> None:
        """`is_file` answers whether a default document exists (a test may pass its own)."""
        self._is_file = is_file
        self._exact: dict[str, list[tuple[int, _CompiledSite]]] = {}
        self._wildcard: list[tuple[str, int, _CompiledSite]] = []
        self._default: list[tuple[int, _CompiledSite]] = []
        for site in config.sites:
            compiled = _CompiledSite(site)
            for binding in site.bindings:
                if not binding.hosts:
                    self._default.append((binding.port, compiled))
                for host in binding.hosts:
                    if host.startswith("*."):
                        self._wildcard.append((host[1:], binding.port, compiled))
                    else:
                        self._exact.setdefault(host, []).append((binding.port, compiled))
        self._wildcard.sort(key=lambda item: len(item[0]), reverse=True)

    def site_for(self, host: str | bytes | None, *, port: int | None = None) -> SiteConfig | None:
        compiled = self._site(normalize_host(host), port)
        return None if compiled is None else compiled.site

    def _site(self, host: str, port: int | None) -> _CompiledSite | None:
        for candidate_port, site in self._exact.get(host, ()):
            if port is None or candidate_port == port:
                return site
        for suffix, candidate_port, site in self._wildcard:
            if (
                host.endswith(suffix)
                and len(host) > len(suffix)
                and (port is None or candidate_port == port)
            ):
                return site
        for candidate_port, site in self._default:
            if port is None or candidate_port == port:
                return site
        return None

    def match(
        self, host: str | bytes | None, path: str | bytes, *, port: int | None = None
    ) -> Route | None:
        site = self._site(normalize_host(host), port)
        if site is None:
            return None
        path = wsgi_string(path)
        if not path.startswith("/"):
            path = "/" + path
        for compiled in site.mounts:
            virtual = compiled.virtual_path
            if virtual == "/":
                script_name, path_info = "", path
            elif _under(path, virtual):
                script_name, path_info = virtual, path[len(virtual) :]
            else:
                continue
            return self._route(site.site, compiled, script_name, path_info)
        return None

    def _route(
        self, site: SiteConfig, compiled: _CompiledMount, script_name: str, path_info: str
    ) -> Route:
        mount = compiled.mount
        handlers = self._scope_handlers(compiled, path_info)
        for handler in handlers:
            app = compiled.apps.get(handler.app_name)
            if app is None:
                continue
            if not is_file_pattern(handler.path):
                if _handler_matches(handler.path, path_info):
                    return Route(site, mount, app, handler, script_name, path_info)
                continue
            end = _script_end(handler.path, path_info)
            if end >= 0:
                script, rest = path_info[:end], path_info[end:]
                return Route(site, mount, app, handler, script_name, path_info, script, rest)
        if path_info == "" or path_info.endswith("/"):
            folder = path_info if path_info.endswith("/") else "/"
            for name in mount.static.default_documents:
                for handler in handlers:
                    app = compiled.apps.get(handler.app_name)
                    if (
                        app is not None
                        and is_file_pattern(handler.path)
                        and _handler_matches(handler.path, name)
                        and self._document_exists(mount.physical_path, folder + name)
                    ):
                        script = folder + name
                        return Route(site, mount, app, handler, script_name, path_info, script)
        return Route(site, mount, None, None, script_name, path_info)

    def _document_exists(self, root: str, script: str) -> bool:
        try:
            return self._is_file(root + os.fsdecode(script.encode("latin-1")))
        except (OSError, ValueError):
            return False

    @staticmethod
    def _scope_handlers(compiled: _CompiledMount, path_info: str) -> tuple[Handler, ...]:
        """The handlers of the deepest folder scope that contains the path."""
        relative = path_info.lstrip("/")
        for folder, scope in compiled.scopes:
            if folder and not _under(relative, folder):
                continue
            return scope.handlers
        return ()

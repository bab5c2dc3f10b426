"""Static files for URLs no handler maps: safe resolution and the HTTP caching/range rules.

`resolve(policy, path_info)` turns a percent-decoded path (relative to the mount) into a
`StaticFile`, a `Redirect` (a folder asked for without its trailing slash) or a `Denied`:

- 404 for anything that could reach outside the folder (`..`, an encoded or double-encoded
  traversal, a backslash, NUL or control characters, a symlink leading out: symlinks are
  followed only inside the site's folder, and what they lead to is judged like the link) and
  for what is never a public asset (the deny list, `docs/security.md`): hidden files and
  folders (any dot segment: `.env`, `.git`, `.htaccess`), VCS folders (`CVS`, `_darcs`),
  configuration files (`web.config`, `corral.toml`, `php.ini`, `*.ini`, `*.config`...) and
  dependency manifests of server-side stacks, server-side source (`*.py`, `*.php`, `*.rb`,
  `*.pl`, `*.cgi`, `*.asp`... whatever the site's engines, plus the engines' own suffixes, such
  as `.js` for Node.js, where a static `.js` is otherwise a browser asset), backups and editor
  files (`*.bak`, `*~`, `*.swp`, `*.orig`, `#*#`...), logs and databases, the ERROR_LOG_DIR and
  DEPLOY_LOG folders, the files the applications' variables name (DEPLOY_FILE, DEPLOY_LOG,
  PHP_INI), a file's URL with a trailing slash (`/file.txt/`), and what does not exist. 404
  rather than 403 so that a probe learns nothing.
- 403 for a folder with no index document (no directory listings).

Everything else here is pure: `etag`, `http_date`/`parse_http_date`, `parse_range`,
`evaluate` (If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, If-Range, Range ->
200/206/304/412/416), `plan` (that decision with its response headers and the byte range to
send, e.g. with `os.sendfile`) and `content_type`.
"""

from __future__ import annotations

import email.utils
import functools
import mimetypes
import os
import re
import stat
from dataclasses import dataclass

from corral.config.model import StaticPolicy

#: Default documents never served as files, whatever the list says: scripts (IIS answers 404.3
#: for an extension it has no handler for, never the source).
_SCRIPT_SUFFIXES = (".php", ".phtml", ".inc", ".asp", ".aspx", ".py", ".pl", ".rb", ".cgi")
#: Names never served, at any depth, compared case-insensitively (macOS file systems are
#: case-insensitive): configuration files, VCS and cache folders without a leading dot, and the
#: dependency manifests of server-side stacks (they tell a probe which versions to attack).
FORBIDDEN_NAMES = frozenset(
    {
        "web.config",
        "corral.toml",
        "applicationhost.config",
        "php.ini",
        "__pycache__",
        "cvs",
        "_darcs",
        "requirements.txt",
        "pipfile",
        "pipfile.lock",
        "pyproject.toml",
        "poetry.lock",
        "composer.json",
        "composer.lock",
        "gemfile",
        "gemfile.lock",
        "cpanfile",
    }
)
#: Suffixes of files that are never public assets, whatever the site's engines (lower case):
#: server-side source (not `.js`: in a static folder it is a browser asset; a Node.js site's
#: engine adds it), configuration, logs and databases, backups and editor files.
NEVER_SERVED_SUFFIXES = (
    # server-side source: Python, PHP, Ruby, Perl, CGI, ASP/ASP.NET, JSP, ColdFusion
    ".py",
    ".pyc",
    ".pyo",
    ".pyd",
    ".pyw",
    ".php",
    ".php3",
    ".php4",
    ".php5",
    ".php7",
    ".php8",
    ".phtml",
    ".phps",
    ".phar",
    ".inc",
    ".rb",
    ".ru",
    ".erb",
    ".rhtml",
    ".pl",
    ".pm",
    ".plx",
    ".psgi",
    ".cgi",
    ".fcgi",
    ".asp",
    ".aspx",
    ".asa",
    ".asax",
    ".ascx",
    ".ashx",
    ".asmx",
    ".cs",
    ".vb",
    ".jsp",
    ".jspx",
    ".cfm",
    ".cfc",
    # configuration, logs, databases
    ".config",
    ".ini",
    ".env",
    ".log",
    ".sqlite",
    ".sqlite3",
    ".db",
    ".sql",
    # backups and editor files
    "~",
    ".bak",
    ".backup",
    ".bk",
    ".old",
    ".orig",
    ".rej",
    ".save",
    ".sav",
    ".swp",
    ".swo",
    ".swx",
    ".tmp",
)

_DOUBLE_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: str
    size: int
    mtime: float
    etag: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Redirect:
    #: The path (relative to the mount) with "/" added; the front prefixes SCRIPT_NAME.
    location: str
    status: int = 301


@dataclass(frozen=True, slots=True)
class Denied:
    status: int
    reason: str


def as_text(path_info: str | bytes) -> str | None:
    """Path bytes (from the front, percent-decoded) as text; None if they are not UTF-8."""
    if isinstance(path_info, str):
        return path_info
    try:
        return path_info.decode("utf-8")
    except UnicodeDecodeError:
        return None


@functools.lru_cache(maxsize=1024)
def _real_root(root: str) -> str:
    # A mount's folder is resolved once (load gives real paths already); its files every time.
    return os.path.realpath(root)


def check_path(policy: StaticPolicy, path_info: str) -> tuple[str, ...] | Denied:
    """The path's segments if they are safe to look up, else why not (no file system access)."""
    if "\\" in path_info:
        return Denied(404, "backslash in path")
    if _CONTROL.search(path_info):
        return Denied(404, "control character in path")
    if _DOUBLE_ENCODED.search(path_info):
        # Decoded once already; what still looks encoded was encoded twice (IIS refuses it too).
        return Denied(404, "double-encoded path")
    segments = tuple(segment for segment in path_info.split("/") if segment)
    for segment in segments:
        if segment in (".", ".."):
            return Denied(404, "dot segment in path")
    reason = _hidden(policy, segments)
    if reason is not None:
        return Denied(404, reason)
    return segments


def _hidden(policy: StaticPolicy, segments: tuple[str, ...]) -> str | None:
    for segment in segments:
        lowered = segment.lower().rstrip(". ")
        if segment.startswith("."):
            return "hidden file"
        if lowered in FORBIDDEN_NAMES:
            return "configuration file"
    if segments:
        name = segments[-1].lower().rstrip(". ")
        if name.endswith(NEVER_SERVED_SUFFIXES) or name.startswith("#"):
            return "never a public asset (source, configuration, log or backup)"
        for suffix in policy.source_suffixes:
            if name.endswith(suffix):
                return "source file of the application's engine"
    joined = "/".join(segments).lower()
    for hidden_file in policy.hidden_files:
        if joined == hidden_file.lower():
            return "file named by the application's variables"
    for folder in policy.hidden_dirs:
        folder = folder.lower().strip("/")
        if folder and (joined == folder or joined.startswith(folder + "/")):
            return "log folder (ERROR_LOG_DIR or DEPLOY_LOG)"
    return None


def resolve(policy: StaticPolicy, path_info: str | bytes) -> StaticFile | Redirect | Denied:
    """Find the file for `path_info` (percent-decoded, relative to the mount) under the root.

    Pass `Route.path_info_bytes` (or text). Bytes that are not UTF-8 name no file: 404.
    """
    text = as_text(path_info)
    if text is None:
        return Denied(404, "path is not UTF-8")
    path_info = text
    checked = check_path(policy, path_info)
    if isinstance(checked, Denied):
        return checked
    root = _real_root(policy.root)
    candidate = os.path.join(root, *checked) if checked else root
    real = os.path.realpath(candidate)
    if real != root and not real.startswith(root + os.sep):
        return Denied(404, "outside the site folder")
    relative = tuple(part for part in os.path.relpath(real, root).split(os.sep) if part != ".")
    reason = _hidden(policy, relative)
    if reason is not None:
        return Denied(404, reason)
    try:
        st = os.stat(real)
    except OSError:
        return Denied(404, "not found")
    if stat.S_ISDIR(st.st_mode):
        if not path_info.endswith("/"):
            return Redirect(path_info + "/")
        for index in policy.default_documents:
            if index.lower().endswith(_SCRIPT_SUFFIXES):
                continue
            found = resolve(policy, path_info + index)
            if isinstance(found, StaticFile):
                return found
        return Denied(403, "directory listing denied")
    if not stat.S_ISREG(st.st_mode):
        return Denied(404, "not a regular file")
    if path_info.endswith("/"):
        return Denied(404, "a file asked for as a folder")
    return StaticFile(
        real, st.st_size, st.st_mtime, etag(st.st_size, st.st_mtime_ns), content_type(real)
    )


def etag(size: int, mtime_ns: int) -> str:
    """A strong validator from size and modification time."""
    return f'"{mtime_ns:x}-{size:x}"'


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(int(timestamp), usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    #: Inclusive.
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable:
    """A syntactically valid Range that selects no byte of the file (416)."""

    def content_range(self, size: int) -> str:
        return f"bytes */{size}"


UNSATISFIABLE = Unsatisfiable()


def parse_range(header: str | None, size: int) -> ByteRange | Unsatisfiable | None:
    """One `bytes=` range; None means "send the whole file" (absent, malformed or several)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    if "," in spec:
        return None  # several ranges: a 200 with the whole file is allowed (RFC 9110 14.2)
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    return ByteRange(start, min(end, size - 1))


@dataclass(frozen=True, slots=True)
class Decision:
    #: 200, 206, 304, 412 or 416.
    status: int
    range: ByteRange | None = None


def _etag_list(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _weak_equal(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def evaluate(
    method: str,
    *,
    etag_value: str,
    mtime: float,
    size: int,
    if_match: str | None = None,
    if_unmodified_since: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_range: str | None = None,
    range_header: str | None = None,
) -> Decision:
    """RFC 9110 section 13.2.2's order of preconditions, then Range (GET only)."""
    seconds = int(mtime)
    if if_match is not None:
        tags = _etag_list(if_match)
        if "*" not in tags and etag_value not in tags:
            return Decision(412)
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and seconds > since:
            return Decision(412)
    safe = method in ("GET", "HEAD")
    if if_none_match is not None:
        tags = _etag_list(if_none_match)
        if "*" in tags or any(_weak_equal(tag, etag_value) for tag in tags):
            return Decision(304 if safe else 412)
    elif if_modified_since is not None and safe:
        since = parse_http_date(if_modified_since)
        if since is not None and seconds <= since:
            return Decision(304)
    if method != "GET" or range_header is None:
        return Decision(200)
    if if_range is not None:
        if if_range.strip().startswith(('"', "W/")):
            # A strong comparison: a weak validator never matches.
            if if_range.strip() != etag_value:
                return Decision(200)
        else:
            date = parse_http_date(if_range)
            if date is None or seconds != int(date):
                return Decision(200)
    selected = parse_range(range_header, size)
    if selected is None:
        return Decision(200)
    if isinstance(selected, Unsatisfiable):
        return Decision(416)
    return Decision(206, selected)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send for a static file: status, headers, and which bytes of the file."""

    status: int
    headers: tuple[tuple[str, str], ...]
    #: Bytes of the file to send (`os.sendfile` from `offset`, `length` bytes); 0 = no body.
    offset: int
    length: int


def plan(
    file: StaticFile,
    method: str,
    *,
    if_match: str | None = None,
    if_unmodified_since: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_range: str | None = None,
    range_header: str | None = None,
) -> Plan:
    """`evaluate` for a resolved file, with the response headers (HEAD: same headers, no body)."""
    decision = evaluate(
        method,
        etag_value=file.etag,
        mtime=file.mtime,
        size=file.size,
        if_match=if_match,
        if_unmodified_since=if_unmodified_since,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
        if_range=if_range,
        range_header=range_header,
    )
    validators = (("ETag", file.etag), ("Last-Modified", http_date(file.mtime)))
    if decision.status == 304:
        return Plan(304, validators, 0, 0)
    if decision.status == 412:
        return Plan(412, (("Content-Length", "0"),), 0, 0)
    if decision.status == 416:
        unsatisfiable = UNSATISFIABLE.content_range(file.size)
        return Plan(416, (("Content-Range", unsatisfiable), ("Content-Length", "0")), 0, 0)
    offset, length = 0, file.size
    headers: list[tuple[str, str]] = [
        ("Content-Type", file.content_type),
        *validators,
        ("Accept-Ranges", "bytes"),
    ]
    if decision.range is not None:
        offset, length = decision.range.start, decision.range.length
        headers.append(("Content-Range", decision.range.content_range(file.size)))
    headers.append(("Content-Length", str(length)))
    if method == "HEAD":
        length = 0
    return Plan(decision.status, tuple(headers), offset, length)


_MIME = mimetypes.MimeTypes()
#: Sane defaults where the platform tables differ or lack an entry.
_OVERRIDES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".xml": "application/xml",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".zip": "application/zip",
    ".gz": "application/gzip",
}
_TEXT_LIKE = ("text/", "application/json", "application/xml", "image/svg+xml")


def content_type(path: str) -> str:
    """Content-Type for a file name; text types carry charset=utf-8."""
    suffix = os.path.splitext(path)[1].lower()
    kind = _OVERRIDES.get(suffix)
    if kind is None:
        guessed, _ = _MIME.guess_type("x" + suffix, strict=False)
        kind = guessed or "application/octet-stream"
    if kind.startswith(_TEXT_LIKE):
        return f"{kind}; charset=utf-8"
    return kind

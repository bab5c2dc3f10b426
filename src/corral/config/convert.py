"""Pure converters shared by the web.config and TOML readers.

Each takes the value as written (a string from XML, or whatever tomllib produced) and returns the
typed value or raises `ValueError` with a message fit for ``file:line: setting: message``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def to_int(value: object, *, minimum: float | None = None, maximum: float | None = None) -> int:
    """An integer, from an int or a decimal string (Zoo reads every number attribute so)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError(f"expected a whole number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"must be at least {_show(minimum)}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {_show(maximum)}, got {number}")
    return number


def to_number(
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: bool = False,
) -> float:
    """A decimal number (seconds...), from an int, a float or a string such as "2.5".

    ``above``: the value must be greater than ``minimum``, not equal to it."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    if minimum is not None:
        if above and number <= minimum:
            raise ValueError(f"must be more than {_show(minimum)}, got {_show(number)}")
        if number < minimum:
            raise ValueError(f"must be at least {_show(minimum)}, got {_show(number)}")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {_show(maximum)}, got {_show(number)}")
    return number


def _show(number: float) -> str:
    """2.0 as "2", 2.5 as "2.5"."""
    return str(int(number)) if float(number).is_integer() else str(number)


_TRUE = {"true", "yes", "on", "1", "enabled"}
_FALSE = {"false", "no", "off", "0", "disabled"}


def to_bool(value: object) -> bool:
    """A boolean from TOML true/false or IIS spellings (true/false, Enabled/Disabled)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueError(f"expected true/false (or Enabled/Disabled), got {value!r}")


def to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")


def to_choice(value: object, choices: Sequence[str]) -> str:
    """One of `choices`, compared case-insensitively; returns the canonical spelling."""
    text = to_str(value).strip()
    for choice in choices:
        if text.lower() == choice.lower():
            return choice
    raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")


def to_list(value: object, *, separators: str = ";") -> tuple[str, ...]:
    """A list from a TOML array of strings or a `;`-separated string (Zoo's list spelling)."""
    if isinstance(value, str):
        pattern = "[" + re.escape(separators) + "]"
        return tuple(part.strip() for part in re.split(pattern, value) if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item for item in value if item)
    raise ValueError(f"expected a string or a list of strings, got {value!r}")


def to_trusted_proxies(value: object) -> tuple[str, ...]:
    """Addresses or CIDR networks (`127.0.0.1`, `10.0.0.0/8`, `::1`) or `*`; `;`/`,`-separated
    in a string, or a list."""
    import ipaddress

    entries = to_list(value, separators=";, ")
    for entry in entries:
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an address or network: {entry!r}") from None
    return entries


def to_mask(value: object) -> tuple[str, ...]:
    """WATCH_FILE_CHANGES_MASK: glob masks separated by `;`, `,`, `|` or spaces."""
    masks = to_list(value, separators=";,| ")
    for mask in masks:
        if "\x00" in mask:
            raise ValueError("a file mask cannot contain NUL")
    return masks


def to_virtual_path(value: object) -> str:
    """A URL prefix: "/" or "/a/b" (added leading slash, no trailing slash, no dot segments)."""
    text = to_str(value).strip()
    if not text or text == "/":
        return "/"
    if "\\" in text or "?" in text or "#" in text or "%" in text:
        raise ValueError(f"a virtual path is a plain URL prefix like /blog, got {text!r}")
    parts = [part for part in text.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ValueError(f"a virtual path cannot contain '.' or '..' segments, got {text!r}")
    return "/" + "/".join(parts)


def to_host_name(value: object) -> str:
    """A Host header value to match: lower-case, no port, optional leading `*.` wildcard."""
    text = to_str(value).strip().lower().rstrip(".")
    if not text:
        raise ValueError("a host name cannot be empty")
    body = text[2:] if text.startswith("*.") else text
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", body):
        raise ValueError(f"not a host name: {text!r}")
    return text


def to_port(value: object) -> int:
    return to_int(value, minimum=0, maximum=65535)


def split_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or a bare ``PORT`` (host 127.0.0.1) -> (host, port);
    ValueError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text.strip()
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"not HOST:PORT: {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not HOST:PORT or PORT: {text!r}")
    if any(c.isspace() for c in host) or ("[" in host or "]" in host):
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host, int(port)


def to_listen(value: object) -> str:
    """An address to listen on: ``HOST:PORT``, ``[IPV6]:PORT`` or a port alone (on 127.0.0.1),
    given as a string or a whole number; the canonical ``HOST:PORT`` spelling."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else to_str(value)
    host, port = split_listen(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_HSTS_DIRECTIVE = re.compile(r"[A-Za-z][A-Za-z0-9-]*(=([0-9]+|\"[^\"]*\"))?")


def to_hsts(value: object) -> str:
    """A Strict-Transport-Security value (RFC 6797 6.1): ``max-age=SECONDS`` with optional
    ``includeSubDomains`` and ``preload``; "" means none."""
    text = to_str(value).strip()
    if not text:
        return ""
    names: list[str] = []
    for part in text.split(";"):
        directive = part.strip()
        if not directive:
            continue
        if not _HSTS_DIRECTIVE.fullmatch(directive):
            raise ValueError(f"not an HSTS directive: {directive!r}")
        names.append(directive.partition("=")[0].lower())
    ages = [d for d in text.split(";") if d.strip().lower().startswith("max-age=")]
    if names.count("max-age") != 1 or len(ages) != 1 or not ages[0].strip()[8:].isdigit():
        raise ValueError(f"an HSTS value needs one max-age=SECONDS, got {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"a directive is repeated in {text!r}")
    return "; ".join(part.strip() for part in text.split(";") if part.strip())


_WARM_UP_URL = re.compile(r"(https?)://([^/?#@\s]+)(/[^#\s]*)?")


def to_warm_up(value: object) -> str:
    """A warm-up request's target (the ``warm_up`` setting): a path with an optional query
    (``/admin/login/?next=/``), or an ``http://`` or ``https://`` URL whose host (and port)
    the request names in its Host header; "" means none."""
    text = to_str(value).strip()
    if not text:
        return ""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text) or "#" in text:
        raise ValueError(f"a warm-up request is a path or URL without spaces or '#': {text!r}")
    if text.startswith("/"):
        if text.startswith("//"):
            raise ValueError(f"a warm-up path begins with one '/', got {text!r}")
        return text
    match = _WARM_UP_URL.fullmatch(text)
    if match is None:
        raise ValueError(
            f"a warm-up request is a path (/...) or an http(s)://host/... URL, got {text!r}"
        )
    host, _, port = match[2].rpartition(":") if match[2].count(":") == 1 else (match[2], "", "")
    to_host_name(host)
    if port:
        to_port(port)
    return text if match[3] else text + "/"

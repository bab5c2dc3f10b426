"""The per-request limits of the HTTP/1.1 request parser (``parser.RequestParser``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits. Defaults follow nginx/gunicorn (8 KiB lines, 100 fields)."""

    #: Longest request-target accepted (bytes); longer is 414.
    max_request_line: int = 8190
    #: Sum over header fields of name + value + 4 (": " and CRLF); over is 431.
    max_header_bytes: int = 65536
    #: Most header fields (trailer fields count separately against the same limit); 431.
    max_header_count: int = 100
    #: Longest single field line, counted as name + value + 4 (": " and CRLF); over is 431.
    max_header_field: int = 8190
    #: Largest body; a larger declared Content-Length is 413 at once, a chunked body is
    #: 413 as soon as it passes the limit. ``None``: no limit (the front streams bodies).
    max_body_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_request_line", "max_header_bytes", "max_header_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be positive")
        if self.max_header_field < 1:
            raise ValueError("Limits.max_header_field must be positive")
        if self.max_body_size is not None and self.max_body_size < 0:
            raise ValueError("Limits.max_body_size must be >= 0 or None")

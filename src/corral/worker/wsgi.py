"""PEP 3333 machinery: the environ, ``wsgi.input``, ``wsgi.errors``, ``start_response`` and
``write()``, ``wsgi.file_wrapper``, and running one request through an application.

Transport-free: a request talks to its connection through a :class:`Channel` (implemented by
``server.py`` over FastCGI), so this module only knows WSGI. Stdlib only.
"""

from __future__ import annotations

import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, BinaryIO, Protocol, cast

from corral.worker import debugpage
from corral.worker.head import encode_head

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Block size for wsgi.file_wrapper (one FastCGI record holds at most 65535 bytes).
FILE_BLOCK = 65536
#: A response body buffered from a list/tuple result is flushed when it grows past this.
FLUSH_THRESHOLD = 256 * 1024


class ClientDisconnected(OSError):
    """The request went away: the front aborted it, the connection closed, or its body ended
    before CONTENT_LENGTH bytes. Raised into the application from ``wsgi.input`` and ``write()``.
    """


class Channel(Protocol):
    """What a request needs from its connection (FastCGI in ``server.py``)."""

    #: Set once the request is aborted or the connection is gone: nothing more can be sent.
    aborted: bool

    def read_stdin(self) -> bytes:
        """Block for the next chunk of the request body; ``b""`` at its end.

        Raises ClientDisconnected when the request is aborted or the connection closes.
        """

    def send_stdout(self, pieces: list[bytes]) -> None:
        """Send these response bytes, in order, now (a large piece is not copied to join it
        to the others). Raises ClientDisconnected when the connection is gone."""

    def send_file(self, readinto: Callable[[memoryview], int | None], limit: int | None) -> int:
        """Send a file's content read with ``readinto`` (at most ``limit`` bytes); return the
        number of bytes sent."""

    def poll_aborted(self) -> bool:
        """Without blocking, check whether the front aborted the request (or went away)."""


# --------------------------------------------------------------------------------------------
# wsgi.input


class InputStream:
    """``wsgi.input``: the request body, streamed from the channel as the app reads it.

    Never holds more than what the app asked for plus one STDIN record. With CONTENT_LENGTH, it
    ends after that many bytes (an early end of the stream raises ClientDisconnected); without,
    it ends with the STDIN stream (``wsgi.input_terminated``).

    The chunks are kept as they came (only the first may be partly read): a read that is
    exactly the next chunk returns it as it is, any other is one copy of what it returns (a
    1 MiB upload read 64 KiB at a time was copied three times, into one growing buffer, out
    of it and into ``bytes``).
    """

    __slots__ = ("_chunks", "_eof", "_held", "_read_chunk", "_remaining", "_start")

    def __init__(self, read_chunk: Callable[[], bytes], content_length: int | None) -> None:
        self._read_chunk = read_chunk
        #: The chunks not yet read; ``_start`` bytes of the first are read already.
        self._chunks: deque[bytes] = deque()
        self._start = 0
        #: Bytes held, not yet read.
        self._held = 0
        self._remaining = content_length
        self._eof = content_length == 0

    def _fill(self) -> bool:
        """Append the next chunk; False at the end of the body."""
        if self._eof:
            return False
        chunk = self._read_chunk()
        remaining = self._remaining
        if not chunk:
            self._eof = True
            if remaining:
                raise ClientDisconnected(
                    f"the request body ended {remaining} bytes short of its CONTENT_LENGTH"
                )
            return False
        if remaining is not None:
            if len(chunk) >= remaining:
                chunk = chunk[:remaining]
                self._eof = True
            self._remaining = remaining - len(chunk)
        if chunk:
            self._chunks.append(chunk)
            self._held += len(chunk)
        return True

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes held (``size`` <= ``_held``)."""
        if size <= 0:
            return b""
        chunks = self._chunks
        start = self._start
        first = chunks[0]
        available = len(first) - start
        self._held -= size
        if size < available:
            self._start = start + size
            return first[start : start + size]
        chunks.popleft()
        self._start = 0
        if size == available:
            return first[start:] if start else first
        parts: list[bytes | memoryview] = [memoryview(first)[start:] if start else first]
        need = size - available
        while need:
            chunk = chunks[0]
            if len(chunk) <= need:
                parts.append(chunks.popleft())
                need -= len(chunk)
            else:
                parts.append(memoryview(chunk)[:need])
                self._start = need
                need = 0
        return b"".join(parts)

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(self._held)
        while self._held < size and self._fill():
            pass
        return self._take(min(size, self._held))

    def readline(self, size: int | None = -1, /) -> bytes:
        limit = -1 if size is None or size < 0 else size
        chunks = self._chunks
        scanned = 0  # bytes held before chunk ``index``, searched without a newline
        index = 0
        while True:
            while index < len(chunks):
                chunk = chunks[index]
                base = self._start if index == 0 else 0
                end = chunk.find(b"\n", base)
                if end >= 0:
                    cut = scanned + end - base + 1
                    return self._take(cut if limit < 0 else min(cut, limit))
                scanned += len(chunk) - base
                index += 1
            if 0 <= limit <= scanned:
                return self._take(limit)
            if not self._fill():
                return self._take(scanned)

    def readlines(self, hint: int | None = -1, /) -> list[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


#: ``wsgi.input`` of a request without a body that has all arrived: shared by such requests
#: (reading an empty stream changes nothing in it), so that none builds its own.
EMPTY_INPUT = InputStream(bytes, 0)


# --------------------------------------------------------------------------------------------
# wsgi.errors


class ErrorStream:
    """``wsgi.errors``: text to the worker's stderr (line-buffered; the host logs it), and
    optionally also to the front as FCGI_STDERR (``to_front``)."""

    __slots__ = ("_to_front",)

    def __init__(self, to_front: Callable[[str], None] | None = None) -> None:
        self._to_front = to_front

    def write(self, text: str, /) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes a str, not {type(text).__name__}")
        try:
            written = sys.stderr.write(text)
        except (OSError, ValueError):
            written = len(text)  # stderr is gone (the host died): a log line is not worth a 500
        if self._to_front is not None:
            self._to_front(text)
        return written

    def writelines(self, lines: Iterable[str], /) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


STDERR = ErrorStream()


# --------------------------------------------------------------------------------------------
# wsgi.file_wrapper


class FileWrapper:
    """``wsgi.file_wrapper``: iterable over a file-like object; the worker recognises it and
    sends the file in 64 KiB blocks read straight into its output buffer."""

    __slots__ = ("blksize", "filelike")

    def __init__(self, filelike: BinaryIO, blksize: int = FILE_BLOCK) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.blksize
        while True:
            block = read(size)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------------------------
# the environ


def environ_base(*, multithread: bool) -> dict[str, Any]:
    """The part of the environ common to every request (copied per request): the WSGI keys,
    and the defaults of what a front may leave out (its params overwrite them)."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": STDERR,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "SCRIPT_NAME": "",
        "PATH_INFO": "",
        "QUERY_STRING": "",
        "REQUEST_METHOD": "GET",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }


def content_length(environ: dict[str, Any]) -> int | None:
    """CONTENT_LENGTH as an int; None when absent or empty. Raises ValueError when malformed."""
    value = environ.get("CONTENT_LENGTH")
    if not value:
        return None
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"malformed CONTENT_LENGTH {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# the response

ERROR_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>Internal Server Error</h1><p>The application failed to answer this request. "
    b"The details are in the application's error log.</p></body></html>\n"
)
ERROR_HEAD = (
    b"Status: 500 Internal Server Error\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Length: " + str(len(ERROR_BODY)).encode() + b"\r\nCache-Control: no-store\r\n\r\n"
)


def development_page(exc: BaseException, method: str, path: str) -> bytes | None:
    """The development page's response (``debugpage``), or None if it cannot be made (then
    the plain 500 goes out: the failure is logged, never a reason to fail the request)."""
    try:
        return debugpage.response(exc, method, path)
    except Exception as failure:
        log_error("the development page could not be made", failure)
        return None


def log_error(message: str, exc: BaseException | None = None) -> None:
    """A line (and a traceback) to the worker's stderr, which the host logs."""
    text = f"corral worker: {message}\n"
    if exc is not None:
        text += "".join(traceback.format_exception(exc))
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone (the host died): nothing to tell, and no reason to fail


class Response:
    """One request's response state: ``start_response``, ``write()`` and the body.

    Output is queued in ``pending`` and handed to the channel by ``flush()``; ``committed``
    becomes true once anything reached the channel (after that, the head cannot change).
    """

    __slots__ = (
        "channel",
        "committed",
        "declared",
        "head",
        "head_only",
        "head_queued",
        "overflow_logged",
        "pending",
        "pending_len",
        "sent",
        "status",
    )

    def __init__(self, channel: Channel, head_only: bool) -> None:
        self.channel = channel
        self.head_only = head_only
        self.status: str | None = None
        self.head = b""  # validated head without the final blank line
        self.declared: int | None = None  # the app's Content-Length
        self.head_queued = False
        self.committed = False
        self.sent = 0  # body bytes passed on (or skipped, for HEAD)
        self.pending: list[bytes] = []  # output not yet given to the channel
        self.pending_len = 0
        self.overflow_logged = False

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
            self.reset()
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        self.head, self.declared = encode_head(status, headers)
        self.status = status
        return self.write

    def reset(self) -> None:
        """Forget a head (and body) not yet sent, for an error page."""
        self.status = None
        self.head_queued = False
        self.declared = None
        self.sent = 0
        self.pending = []
        self.pending_len = 0

    def write(self, data: bytes) -> None:
        """The ``write()`` callable: the bytes are sent before it returns."""
        self.body(data)
        self.flush()

    def ended_head(self, add_length: int | None) -> bytes:
        """The head with its blank line, and a Content-Length of ``add_length`` when that is
        given, the application declared none and the status may have a body."""
        status = self.status
        if status is None:
            raise AssertionError("the application sent a body before calling start_response()")
        if (
            add_length is not None
            and self.declared is None
            and not status.startswith(("204", "304"))
        ):
            return self.head + b"Content-Length: %d\r\n\r\n" % add_length
        return self.head + b"\r\n"

    def _queue_head(self, add_length: int | None) -> None:
        head = self.ended_head(add_length)
        self.head_queued = True
        self.pending.append(head)
        self.pending_len += len(head)

    def body(self, data: bytes) -> None:
        """Queue a block of the body (the head goes first, once)."""
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"the response body must be bytes, not {type(data).__name__}")
            data = bytes(data)
        if not data:
            return
        if not self.head_queued:
            self._queue_head(None)
        size = len(data)
        declared = self.declared
        if declared is not None and self.sent + size > declared:
            data = data[: max(0, declared - self.sent)]
            size = len(data)
            if not self.overflow_logged:
                self.overflow_logged = True
                log_error(f"the application sent more than its Content-Length ({declared} bytes)")
        self.sent += size
        if self.head_only or not size:
            return
        self.pending.append(data)
        self.pending_len += size

    def flush(self) -> None:
        pending = self.pending
        if pending:
            self.pending = []
            self.pending_len = 0
            self.committed = True
            self.channel.send_stdout(pending)

    def take_pending(self) -> bytes:
        """The output not yet sent (for the caller to send with the end of the request)."""
        data = b"".join(self.pending)
        self.pending = []
        self.pending_len = 0
        return data

    def finish(self, known_length: int | None = None) -> None:
        """The body is complete: make sure the head is queued (an empty body queues it now)."""
        if not self.head_queued:
            self._queue_head(known_length)

    def send_file(self, wrapper: FileWrapper) -> None:
        """Send a wsgi.file_wrapper result in 64 KiB blocks read straight from the file."""
        filelike = wrapper.filelike
        readinto = getattr(filelike, "readinto", None)
        if readinto is None:
            self.iterate(wrapper)
            return
        if not self.head_queued:
            self._queue_head(None)
        self.flush()
        if self.head_only:
            return
        limit = None if self.declared is None else self.declared - self.sent
        self.committed = True
        self.sent += self.channel.send_file(readinto, limit)
        if self.declared is not None and self.sent >= self.declared:
            probe = bytearray(1)
            if readinto(memoryview(probe)):
                log_error(
                    f"the application's file is longer than its Content-Length ({self.declared})"
                )

    def iterate(self, result: Iterable[bytes]) -> None:
        """Send each block as it comes (PEP 3333: no block may be held back), and stop early
        when the front aborts the request."""
        channel = self.channel
        first = True
        for block in result:
            self.body(block)
            self.flush()
            if first:
                first = False
            elif channel.poll_aborted():
                return

    @property
    def short(self) -> bool:
        """True when less body than the declared Content-Length was produced."""
        return self.declared is not None and self.sent < self.declared and not self.head_only


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:
            log_error("the application's close() raised", exc)


def run(app: WSGIApp, environ: dict[str, Any], channel: Channel) -> tuple[int, bytes]:
    """Run one request through the application.

    Returns ``(app_status, tail)``: ``tail`` is output the caller sends with the end of the
    request (so a small response leaves in one write), ``app_status`` is 0 when the response is
    complete and 1 when it was cut short (the application failed after its head was sent, or
    produced less than its Content-Length). ``close()`` is called on the result in every case,
    before this returns. Raises ClientDisconnected when the request was aborted or the
    connection lost (nothing more can be sent).
    """
    response = Response(channel, environ["REQUEST_METHOD"] == "HEAD")
    try:
        result = app(environ, response.start_response)
    except Exception as exc:
        return _failed(response, environ, channel, exc)
    kind = type(result)
    if (kind is list or kind is tuple) and response.status is not None:
        # (A list or tuple has no close() to call.)
        tail = _at_hand(response, cast("list[bytes] | tuple[bytes, ...]", result))
        if tail is not None:
            if channel.aborted:
                raise ClientDisconnected("the request was aborted")
            return 0, tail
    try:
        try:
            if kind is list or kind is tuple:
                blocks: Iterable[bytes] = result
                if not response.head_queued and response.declared is None:
                    # Everything is at hand: tell the front the length (no chunked encoding).
                    total = 0
                    for block in blocks:
                        if type(block) is not bytes:
                            break
                        total += len(block)
                    else:
                        if total or not response.head_only:
                            response.finish(total)
                for block in blocks:
                    response.body(block)
                    if response.pending_len >= FLUSH_THRESHOLD:
                        response.flush()
            elif kind is FileWrapper:
                response.send_file(cast(FileWrapper, result))
            else:
                response.iterate(result)
            if channel.aborted:
                raise ClientDisconnected("the request was aborted")
            response.finish()
        finally:
            _close(result)
    except Exception as exc:
        return _failed(response, environ, channel, exc)
    if response.short:
        log_error(
            f"{_path(environ)}: the application sent {response.sent} of the "
            f"{response.declared} bytes of its Content-Length"
        )
        return 1, response.take_pending()
    return 0, response.take_pending()


def _at_hand(response: Response, blocks: list[bytes] | tuple[bytes, ...]) -> bytes | None:
    """The whole response when the application returned all of it at once (a list or tuple of
    ``bytes``, smaller than FLUSH_THRESHOLD, exactly its Content-Length if it declared one):
    the head (with the Content-Length it did not declare: no chunked encoding) and the body,
    as one ``bytes``. None for anything else (the general path sends it, or says what is
    wrong)."""
    if response.head_queued:
        return None  # (the app called write())
    total = 0
    for block in blocks:
        if type(block) is not bytes:
            return None
        total += len(block)
    if total >= FLUSH_THRESHOLD:
        return None
    declared = response.declared
    if declared is not None and declared != total:
        return None  # more or less than it declared: the general path logs it
    # (As the general path's ``finish``: no length for an empty answer to HEAD.)
    head = response.ended_head(total if total or not response.head_only else None)
    response.head_queued = True
    response.sent = total
    if response.head_only or not total:
        return head
    if len(blocks) == 1:
        return head + blocks[0]
    return head + b"".join(blocks)


def _failed(
    response: Response, environ: dict[str, Any], channel: Channel, exc: Exception
) -> tuple[int, bytes]:
    """The answer when the application raised ``exc`` (``run``'s result)."""
    if channel.aborted:
        raise ClientDisconnected("the request was aborted") from exc
    where = f"{environ.get('REQUEST_METHOD', '')} {_path(environ)}"
    if response.committed:
        log_error(f"{where}: the application failed after its response began", exc)
        return 1, response.take_pending()
    log_error(f"{where}: the application failed; answering 500", exc)
    if debugpage.wanted(environ):  # DEVELOPMENT_MODE, a local client: the traceback page
        page = development_page(exc, environ.get("REQUEST_METHOD", ""), _path(environ))
        if page is not None:
            return 0, page[: page.index(b"\r\n\r\n") + 4] if response.head_only else page
    return 0, ERROR_HEAD if response.head_only else ERROR_HEAD + ERROR_BODY


def _path(environ: dict[str, Any]) -> str:
    return f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"

"""A small blocking FastCGI client for the worker's tests, over the codec's CLIENT role."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from corral.protocol.fastcgi import CLIENT, CLOSED, NEED_DATA, FastCGIConnection
from corral.protocol.fastcgi.events import (
    AbortRequest,
    EndRequest,
    Event,
    GetValues,
    GetValuesResult,
    Stderr,
    Stdin,
    Stdout,
)

Address = str | tuple[str, int]


def base_params(path: str = "/", method: str = "GET", **extra: str) -> dict[str, str]:
    """The CGI params a front would send for a simple request."""
    script_name = extra.pop("SCRIPT_NAME", "")
    path_info, _, query = path.partition("?")
    params = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "REQUEST_URI": script_name + path,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "5555",
        "HTTP_HOST": "localhost",
    }
    params.update(extra)
    return params


def encode(params: dict[str, str] | list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    items = params.items() if isinstance(params, dict) else params
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]


@dataclass
class Response:
    stdout: bytes = b""
    stderr: bytes = b""
    app_status: int | None = None
    protocol_status: int | None = None
    stdout_records: int = 0
    status: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def parse(self) -> Response:
        head, sep, body = self.stdout.partition(b"\r\n\r\n")
        if not sep:
            return self
        self.body = body
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                self.status = value.strip()
            else:
                self.headers.append((name, value.strip()))
        if not self.status:
            self.status = "200 OK"
        return self


class Client:
    """One connection to the worker."""

    def __init__(self, address: Address, timeout: float = 10.0) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.conn = FastCGIConnection(CLIENT)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_event(self) -> Event | None:
        """The next event; None when the worker closed the connection."""
        while True:
            event = self.conn.next_event()
            if event is CLOSED:
                return None
            if event is not NEED_DATA:
                return event
            data = self.sock.recv(65536)
            self.conn.receive_data(data)

    def is_closed_by_peer(self) -> bool:
        """True when the worker has closed the connection (reads EOF)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return False

    def begin(
        self,
        params: dict[str, str] | list[tuple[str, str]],
        *,
        rid: int = 1,
        keep_conn: bool = False,
        stdin: bytes | None = b"",
    ) -> None:
        self.send(self.conn.send_request(rid, encode(params), keep_conn=keep_conn, stdin=stdin))

    def send_stdin(self, data: bytes, rid: int = 1) -> None:
        self.send(self.conn.send(Stdin(rid, data)))

    def abort(self, rid: int = 1) -> None:
        self.send(self.conn.send(AbortRequest(rid)))

    def read_response(self, rid: int = 1) -> Response:
        response = Response()
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            event = self.next_event()
            if event is None:
                raise ConnectionError("the worker closed the connection before END_REQUEST")
            if isinstance(event, Stdout) and event.request_id == rid:
                out.append(event.data)
                response.stdout_records += 1
            elif isinstance(event, Stderr) and event.request_id == rid:
                err.append(event.data)
            elif isinstance(event, EndRequest) and event.request_id == rid:
                response.app_status = event.app_status
                response.protocol_status = event.protocol_status
                break
        response.stdout = b"".join(out)
        response.stderr = b"".join(err)
        return response.parse()

    def request(
        self,
        params: dict[str, str] | list[tuple[str, str]],
        body: bytes = b"",
        *,
        rid: int = 1,
        keep_conn: bool = False,
    ) -> Response:
        self.begin(params, rid=rid, keep_conn=keep_conn, stdin=body)
        return self.read_response(rid)

    def get_values(self, names: list[bytes]) -> dict[bytes, bytes]:
        self.send(self.conn.send(GetValues(names)))
        event = self.next_event()
        assert isinstance(event, GetValuesResult), event
        return dict(event.values)


def get(address: Address, path: str = "/", **extra: str) -> Response:
    """One request on a fresh connection."""
    with Client(address) as client:
        return client.request(base_params(path, **extra))


# -------------------------------------------------------------------------------- WebSocket


WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def websocket_params(path: str = "/", **extra: str) -> dict[str, str]:
    """The params a front forwards for a WebSocket Upgrade request (RFC 6455 4.1)."""
    params = base_params(path)
    params.update(
        {
            "HTTP_UPGRADE": "websocket",
            "HTTP_CONNECTION": "Upgrade",
            "HTTP_SEC_WEBSOCKET_KEY": WS_KEY,
            "HTTP_SEC_WEBSOCKET_VERSION": "13",
        }
    )
    params.update(extra)
    return params


class Tunnel:
    """A WebSocket over one FastCGI request: the handshake's answer is the CGI head on STDOUT;
    after a 101, STDIN carries the client's frames and STDOUT the server's."""

    def __init__(self, address: Address, path: str = "/", **extra: str) -> None:
        from corral.protocol import websocket as ws

        self.ws_module = ws
        self.client = Client(address)
        self.client.begin(websocket_params(path, **extra), stdin=None)
        self.ws = ws.WebSocketConnection(ws.CLIENT)
        self.ended = False
        self.app_status: int | None = None
        self.response = self._read_head()

    def _read_head(self) -> Response:
        out = b""
        while b"\r\n\r\n" not in out:
            event = self.client.next_event()
            if event is None:
                raise ConnectionError("the worker closed the connection before the head")
            if isinstance(event, Stdout):
                out += event.data
            elif isinstance(event, EndRequest):
                self.ended = True
                self.app_status = event.app_status
                break
        response = Response(stdout=out).parse()
        if response.body:
            self.ws.receive_data(response.body)
        if not self.ended and not response.status.startswith("101"):
            # An HTTP answer: read it to its end.
            while True:
                event = self.client.next_event()
                if event is None or isinstance(event, EndRequest):
                    self.ended = True
                    break
                if isinstance(event, Stdout):
                    response.body += event.data
        return response

    def send_raw(self, data: bytes) -> None:
        self.client.send_stdin(data)

    def send_text(self, text: str) -> None:
        self.send_raw(self.ws.send_text(text))

    def send_bytes(self, data: bytes) -> None:
        self.send_raw(self.ws.send_bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.send_raw(self.ws.close(code, reason))

    def end_stdin(self) -> None:
        self.client.send_stdin(b"")

    def next(self) -> object:
        """The next WebSocket event from the server; None once the request ended."""
        ws = self.ws_module
        while True:
            event = self.ws.next_event()
            if event is not ws.NEED_DATA and event is not ws.CLOSED:
                return event
            if self.ended:
                return None
            record = self.client.next_event()
            if record is None:
                self.ended = True
                self.ws.receive_data(b"")
            elif isinstance(record, Stdout) and record.data:
                self.ws.receive_data(record.data)
            elif isinstance(record, EndRequest):
                self.ended = True
                self.app_status = record.app_status
                self.ws.receive_data(b"")

    def shutdown(self) -> None:
        self.client.close()

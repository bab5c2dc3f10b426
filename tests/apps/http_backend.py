"""A tiny stdlib HTTP/1.1 server: the "any command speaking HTTP on PORT" of the generic engine
tests (independent of Corral's code).

Listens on HOST:PORT from its environment, or on the address given as arguments
(``http_backend.py HOST PORT``, for ``%HOST% %PORT%`` in an engine's arguments). Exits when fd 3
(Corral's liveness pipe) reaches EOF, if it is open.

Listens on the Unix socket at SOCKET instead when that variable is set (an engine with
transport ``unix``).

Behaviour by environment:
    BACKEND_EXIT=N        exit with code N at once, after printing a line to stderr
    BACKEND_NEVER_LISTEN=1  never open the port (the readiness check times out)
    BACKEND_LISTEN_DELAY=S  open the port only after S seconds (a slow start)

Requests, by path (the path is the whole URL path, virtual path included):
    /pid            -> "<pid>"
    /env/NAME       -> the value of the variable NAME
    /argv           -> the command line, one argument a line
    /headers        -> the request's header lines, as received
    /echo           -> the request body (POST/PUT), with X-Body-Length
    /exit           -> exit at once, no answer
    /early          -> (POST/PUT) "early" without reading the body, then the connection closes
    anything else   -> "<pid> <method> <path>"

BACKEND_KEEPALIVE=S closes a kept-alive connection idle for S seconds (like a server's
keep-alive timeout). BACKEND_IDLE_DROP=S closes, unanswered, a kept-alive connection on which a
request comes after S seconds idle: what a client sees when it sends a request just as the
server closes an idle connection (the race of a keep-alive timeout, made certain).
"""

import http.server
import os
import socketserver
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _answer(self, body, status=200, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def setup(self):
        super().setup()
        self.last_request = None

    def dropped_as_idle(self):
        """BACKEND_IDLE_DROP: a request after too long idle is dropped with the connection."""
        now = time.monotonic()
        last, self.last_request = self.last_request, now
        if IDLE_DROP and last is not None and now - last > IDLE_DROP:
            self.close_connection = True
            return True
        return False

    def do_GET(self):
        if self.dropped_as_idle():
            return
        path = self.path.split("?")[0]
        if path.endswith("/pid"):
            self._answer(str(os.getpid()).encode())
        elif "/env/" in path:
            self._answer(os.environ.get(path.rsplit("/env/", 1)[1], "").encode())
        elif path.endswith("/argv"):
            self._answer("\n".join(sys.argv).encode())
        elif path.endswith("/headers"):
            self._answer(str(self.headers).encode("latin-1"))
        elif path.endswith("/exit"):
            os._exit(3)
        else:
            self._answer(f"{os.getpid()} {self.command} {path}".encode())

    do_HEAD = do_GET

    def do_POST(self):
        if self.path.split("?")[0].endswith("/early"):
            self.close_connection = True
            self._answer(b"early", extra=[("Connection", "close")])
            return
        body = self._body()
        self._answer(body, extra=[("X-Body-Length", str(len(body)))])

    do_PUT = do_POST


IDLE_DROP = float(os.environ.get("BACKEND_IDLE_DROP") or 0)

if os.environ.get("BACKEND_KEEPALIVE"):
    Handler.timeout = float(os.environ["BACKEND_KEEPALIVE"])


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def watch_liveness():
    try:
        os.fstat(3)
    except OSError:
        return

    def wait():
        while os.read(3, 1):
            pass
        os._exit(0)

    threading.Thread(target=wait, daemon=True).start()


def main():
    watch_liveness()
    if os.environ.get("BACKEND_EXIT"):
        print("backend: exiting as asked", file=sys.stderr, flush=True)
        sys.exit(int(os.environ["BACKEND_EXIT"]))
    if os.environ.get("BACKEND_NEVER_LISTEN"):
        while True:
            time.sleep(1)
    time.sleep(float(os.environ.get("BACKEND_LISTEN_DELAY", "0")))
    if os.environ.get("SOCKET"):
        server = UnixServer(os.environ["SOCKET"], Handler)
    else:
        if len(sys.argv) >= 3:
            host, port = sys.argv[1], int(sys.argv[2])
        else:
            host, port = os.environ["HOST"], int(os.environ["PORT"])
        server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

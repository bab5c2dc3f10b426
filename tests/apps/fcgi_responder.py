"""A tiny, stdlib-only FastCGI responder for the pool's tests (independent of Corral's codec).

Serves on the listening socket inherited at fd 0 (one thread per connection, one request at a
time per connection, FCGI_KEEP_CONN honoured). Exits when fd 3 (the liveness pipe) reaches EOF.

Behaviour by environment:
    RESPONDER_FAIL_IMPORT=1   print a traceback to stderr and exit 4 before serving
    RESPONDER_EXIT_EARLY=N    exit with code N before serving (no traceback)
    RESPONDER_NEVER_READY=1   never accept (the readiness probe times out)
    RESPONDER_START_DELAY=S   sleep S seconds before serving
    RESPONDER_IGNORE_TERM=1   ignore SIGTERM (the host must SIGKILL)
    RESPONDER_SPAWN_CHILD=1   start a grandchild (sleep) in the same process group
    RESPONDER_IGNORE_LIVENESS=1  do not watch fd 3
    RESPONDER_FAIL_IF_EXISTS=P   behave as RESPONDER_FAIL_IMPORT while the file P exists
    RESPONDER_LISTEN_ON_PORT=1   listen on HOST:PORT from the environment instead of fd 0
    RESPONDER_MAX_CONNS=N     answer FCGI_MAX_CONNS=N (default 1)

Requests, by PATH_INFO:
    /pid          -> body "<pid>"
    /sleep/<s>    -> sleep s seconds, then body "<pid>"
    /exit/<n>     -> exit the whole process with code n, no answer
    /close-listener -> stop listening (connections are refused) but stay alive
    /barrier/<n>  -> wait (up to 10 s) until n /barrier requests are in this process at once;
                     body "met" or "timeout" (proves requests are served concurrently)
    anything else -> body "<pid> <path>"
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

LISTENER = None
ARRIVED = threading.Condition()
ARRIVALS = [0]
HEADER = struct.Struct("!BBHHBx")
BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR = 1, 2, 3, 4, 5, 6, 7
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11


def record(rtype, rid, content=b""):
    pad = (8 - len(content) % 8) % 8
    return HEADER.pack(1, rtype, rid, len(content), pad) + content + b"\0" * pad


def encode_pairs(pairs):
    out = b""
    for name, value in pairs:
        for item in (name, value):
            n = len(item)
            out += bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)
        out += name + value
    return out


def decode_pairs(data):
    pairs, pos = [], 0
    while pos < len(data):
        lengths = []
        for _ in range(2):
            if data[pos] < 128:
                lengths.append(data[pos])
                pos += 1
            else:
                lengths.append(struct.unpack("!I", data[pos : pos + 4])[0] & 0x7FFFFFFF)
                pos += 4
        name = data[pos : pos + lengths[0]]
        pos += lengths[0]
        value = data[pos : pos + lengths[1]]
        pos += lengths[1]
        pairs.append((name, value))
    return pairs


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_record(conn):
    head = read_exact(conn, 8)
    if head is None:
        return None
    _version, rtype, rid, length, pad = HEADER.unpack(head)
    body = read_exact(conn, length + pad)
    if body is None:
        return None
    return rtype, rid, body[:length]


def respond(path):
    if path.startswith("/sleep/"):
        time.sleep(float(path.split("/")[2]))
        return str(os.getpid())
    if path.startswith("/exit/"):
        os._exit(int(path.split("/")[2]))
    if path.startswith("/barrier/"):
        wanted = int(path.split("/")[2])
        with ARRIVED:
            ARRIVALS[0] += 1
            ARRIVED.notify_all()
            met = ARRIVED.wait_for(lambda: ARRIVALS[0] >= wanted, timeout=10)
        return "met" if met else "timeout"
    if path == "/close-listener":
        LISTENER.shutdown(socket.SHUT_RDWR)
        return "closed"
    if path == "/pid":
        return str(os.getpid())
    return f"{os.getpid()} {path}"


def serve_connection(conn):
    params, keep = b"", False
    try:
        while True:
            rec = read_record(conn)
            if rec is None:
                return
            rtype, rid, content = rec
            if rtype == GET_VALUES:
                names = [name for name, _ in decode_pairs(content)]
                answers = {
                    b"FCGI_MAX_CONNS": os.environ.get("RESPONDER_MAX_CONNS", "1").encode(),
                    b"FCGI_MAX_REQS": b"1",
                    b"FCGI_MPXS_CONNS": b"0",
                }
                values = [(n, answers[n]) for n in names if n in answers]
                conn.sendall(record(GET_VALUES_RESULT, 0, encode_pairs(values)))
            elif rtype == BEGIN:
                keep = bool(content[2] & 1)
                params = b""
            elif rtype == PARAMS:
                params += content
            elif rtype == STDIN and not content:
                env = {k.decode(): v.decode() for k, v in decode_pairs(params)}
                body = respond(env.get("PATH_INFO", "/")).encode()
                head = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                out = record(STDOUT, rid, head + body) + record(STDOUT, rid)
                out += record(END, rid, struct.pack("!IB3x", 0, 0))
                conn.sendall(out)
                if not keep:
                    return
            elif rtype not in (STDIN, ABORT):
                conn.sendall(record(UNKNOWN_TYPE, 0, bytes([rtype]) + b"\0" * 7))
    except OSError:
        return
    finally:
        conn.close()


def watch_liveness():
    try:
        while os.read(3, 1024):
            pass
    except OSError:
        pass
    os._exit(6)


def main():
    env = os.environ
    print(f"responder {os.getpid()} starting", flush=True)
    if env.get("RESPONDER_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not env.get("RESPONDER_IGNORE_LIVENESS"):
        threading.Thread(target=watch_liveness, daemon=True).start()
    if env.get("RESPONDER_SPAWN_CHILD"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print(f"grandchild {child.pid}", flush=True)
    fail_if = env.get("RESPONDER_FAIL_IF_EXISTS")
    if env.get("RESPONDER_FAIL_IMPORT") or (fail_if and os.path.exists(fail_if)):
        try:
            import no_such_module_for_corral_tests  # noqa: F401
        except ImportError:
            import traceback

            traceback.print_exc()
            sys.exit(4)
    if env.get("RESPONDER_EXIT_EARLY"):
        sys.exit(int(env["RESPONDER_EXIT_EARLY"]))
    if env.get("RESPONDER_START_DELAY"):
        time.sleep(float(env["RESPONDER_START_DELAY"]))
    if env.get("RESPONDER_NEVER_READY"):
        while True:
            time.sleep(3600)
    global LISTENER
    if env.get("RESPONDER_LISTEN_ON_PORT"):
        # Zoo's tcp transport: listen on the port the host chose (PORT/HOST), not on fd 0.
        LISTENER = socket.create_server((env["HOST"], int(env["PORT"])))
    else:
        LISTENER = socket.socket(fileno=0)
    print(f"responder {os.getpid()} serving", flush=True)
    while True:
        try:
            conn, _ = LISTENER.accept()
        except OSError:  # /close-listener: stay alive, refusing connections
            while True:
                time.sleep(3600)
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()

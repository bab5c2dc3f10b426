"""The worker's serving threads: each accepts a FastCGI connection from the host and serves it
to its end, then accepts the next; and the graceful stop.

Fixed (``--threads N``): N threads from the start. Elastic (``--max-threads M`` above N): N
threads from the start, and a thread per connection started on demand: whenever a thread
accepts a connection and no other thread is left waiting for the next one, it starts one more,
up to M. So one thread always waits in accept (below the ceiling) and a new connection never
waits for a thread. A thread above N that has waited ``thread_idle_timeout`` seconds for a
connection while another thread waits too ends. The host decides how many connections it opens
(``supervision/concurrency.py``): the threads follow. The worker advertises ``M`` as
FCGI_MAX_CONNS and ``CORRAL_ELASTIC`` so that the host knows it may open fewer.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
import time
import traceback

from corral.errors import ExitCode
from corral.worker.server import (
    IDLE_TIMEVAL,
    SEND_BUFFER,
    Connection,
    ServeState,
    ThreadBuffers,
    log,
)


def start_thread(listener: socket.socket, state: ServeState, *, spare: bool = False) -> bool:
    """Start one more serving thread, unless the ceiling is reached (or, with ``spare``, when a
    thread already waits in accept). True when one was started."""
    with state.free_lock:
        if state.stopping or state.alive >= state.max_threads:
            return False
        if spare and state.free_threads:
            return False
        state.alive += 1
        slot = state.free_slots.pop()
    try:
        threading.Thread(
            target=accept_loop,
            args=(listener, state, slot),
            name=f"corral-worker-{slot}",
            daemon=True,
        ).start()
    except RuntimeError as exc:  # the system's thread limit
        _release(state, slot)
        log(f"cannot start a thread ({exc}); serving with {state.alive}")
        return False
    return True


def _release(state: ServeState, slot: int) -> None:
    with state.free_lock:
        state.alive -= 1
        state.current[slot] = None
        state.free_slots.append(slot)


def _may_retire(state: ServeState) -> bool:
    """An elastic worker's thread above the floor that waited a whole idle timeout: it ends
    when another thread still waits in accept (so one always does)."""
    with state.free_lock:
        return state.alive > state.threads and state.free_threads > 0


def accept_loop(listener: socket.socket, state: ServeState, slot: int) -> None:
    """One thread: accept a connection, serve it to its end, repeat. The listening socket is
    non-blocking and shared by every thread (and watched by idle connections, which may take a
    new connection over: see ``Connection._idle_wait``)."""
    tcp = listener.family in (socket.AF_INET, socket.AF_INET6)
    elastic = state.max_threads > state.threads
    timeout_ms = int(state.thread_idle_timeout * 1000) if elastic else None
    buffers = ThreadBuffers()
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    while not state.stopping:
        try:
            sock: socket.socket | None = listener.accept()[0]
        except (BlockingIOError, InterruptedError):
            with state.free_lock:
                state.free_threads += 1
            try:
                ready = poller.poll(timeout_ms)
            finally:
                with state.free_lock:
                    state.free_threads -= 1
            if not ready and elastic and _may_retire(state):
                _release(state, slot)
                return
            continue
        except OSError as exc:
            if state.stopping:
                return
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log(f"accept failed ({exc.strerror}); retrying")
                time.sleep(0.1)
            elif exc.errno in (errno.EBADF, errno.EINVAL):
                return
            continue
        if elastic:
            start_thread(listener, state, spare=True)
        while sock is not None:
            sock.setblocking(True)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, IDLE_TIMEVAL)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            except OSError:
                pass
            if tcp:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            try:
                conn = Connection(sock, state, buffers)
                state.current[slot] = conn
                sock = conn.serve()
            except Exception as exc:
                sock = None
                log(
                    "internal error serving a connection:\n"
                    + "".join(traceback.format_exception(exc))
                )
            except BaseException as exc:  # the app raised SystemExit (or worse) in a request
                log(f"the application ended the worker ({type(exc).__name__}: {exc})")
                os._exit(ExitCode.FAILURE)
            buffers.shrink()


def serve_forever(listener: socket.socket, state: ServeState) -> int:
    """Run ``state.threads`` accept loops (more on demand when elastic); return the exit code
    after SIGTERM/SIGINT, once the requests in flight are answered."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if state.stopping:
            return
        state.stopping = True
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener.setblocking(False)
    state.listener = listener
    for _ in range(state.threads):
        start_thread(listener, state)
    while not stop.wait(3600):
        pass
    # Let the requests in flight finish (the host's grace period bounds this wait).
    while state.busy():
        time.sleep(0.02)
    return ExitCode.OK

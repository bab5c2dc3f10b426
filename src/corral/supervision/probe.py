"""The readiness probe: a worker is ready when it answers FCGI_GET_VALUES.

Any FastCGI responder answers GET_VALUES (the spec makes it part of every application), so the
probe works for Corral's Python worker and for php-cgi alike. The probe opens its own connection,
asks for ``FCGI_MAX_CONNS``, ``FCGI_MAX_REQS``, ``FCGI_MPXS_CONNS`` and Corral's own
``CORRAL_PIPELINE`` (which other responders leave out of their answer), waits for the
GET_VALUES_RESULT and closes.

Commands that listen on a port themselves (HTTP servers: ``WorkerSocket.PORT``) are ready when the
port accepts a connection (``port_probe``). For such commands (and those listening on a Unix
socket path themselves, ``WorkerSocket.UNIX_PATH``) the worker set wraps the probe in ``owned``:
first, the listening socket at the worker's address must be held by the worker's own process
tree (``supervision.listeners``), so that a port another program took is a failed start naming
that program (``ListenerTaken``), never a worker whose requests a stranger answers.
"""

from __future__ import annotations

import asyncio
import logging

from corral.errors import CorralError
from corral.protocol.fastcgi import (
    CLIENT,
    CLOSED,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    NEED_DATA,
    FastCGIConnection,
    GetValuesResult,
    RemoteProtocolError,
    records,
)
from corral.protocol.fastcgi.constants import CORRAL_ELASTIC, CORRAL_PIPELINE, RecordType
from corral.supervision.launch import Address
from corral.supervision.lease import Probe, WorkerTraits
from corral.supervision.listeners import Holder, Verdict, who_listens
from corral.supervision.ports import PORTS

_log = logging.getLogger("corral.supervision")


def _get_values_record() -> bytes:
    """FCGI_GET_VALUES for the three limits, CORRAL_PIPELINE and CORRAL_ELASTIC, with padding
    that is never zero.

    The FastCGI library inside Perl's FCGI.pm (`plackup -s FCGI`) never answers a management
    record without padding: it waits for more bytes. When the names encode to a multiple of 8
    bytes, which the usual rule (pad to a multiple of 8) leaves unpadded, a full 8 bytes are
    added; padding of 1..255 bytes is valid FastCGI that every responder skips.
    """
    content = records.encode_pairs(
        (name, b"")
        for name in (
            FCGI_MAX_CONNS,
            FCGI_MAX_REQS,
            FCGI_MPXS_CONNS,
            CORRAL_PIPELINE,
            CORRAL_ELASTIC,
        )
    )
    padding = (-len(content) & 7) or 8
    header = records.pack_header(RecordType.GET_VALUES, 0, len(content), padding)
    return header + content + bytes(padding)


_GET_VALUES = _get_values_record()


#: What a probe that learns nothing (a port accepting a connection) answers.
NO_TRAITS = WorkerTraits()


def traits_from_values(values: dict[bytes, bytes]) -> WorkerTraits:
    """A worker's traits from its FCGI_GET_VALUES answers (names it left out: not known)."""
    advertised = values.get(FCGI_MAX_CONNS)
    max_conns = int(advertised) if advertised is not None and advertised.isdigit() else None
    return WorkerTraits(
        max_conns=max_conns,
        pipelining=values.get(CORRAL_PIPELINE) == b"1",
        elastic=values.get(CORRAL_ELASTIC) == b"1",
    )


class ProbeFailed(CorralError):
    """The worker did not answer the readiness probe as a FastCGI responder should."""


async def open_stream(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a worker's Unix socket path or (host, port)."""
    if isinstance(address, str):
        return await asyncio.open_unix_connection(address)
    host, port = address
    return await asyncio.open_connection(host, port)


async def get_values(address: Address, within: float) -> dict[bytes, bytes]:
    """Ask the worker at ``address`` for its FastCGI limits; return its answers.

    Raises:
        ProbeFailed: the worker closed the connection, sent bad bytes, or did not answer within
            ``within`` seconds.
        OSError: the connection could not be made (nothing listens there).
    """
    try:
        async with asyncio.timeout(within):
            return await _get_values(address)
    except TimeoutError:
        raise ProbeFailed(f"no answer to FCGI_GET_VALUES within {within:g} s") from None


async def _get_values(address: Address) -> dict[bytes, bytes]:
    reader, writer = await open_stream(address)
    try:
        conn = FastCGIConnection(CLIENT)
        writer.write(_GET_VALUES)
        while True:
            event = conn.next_event()
            if isinstance(event, GetValuesResult):
                return dict(event.values)
            if event is CLOSED:
                raise ProbeFailed("the worker closed the connection without answering")
            if event is NEED_DATA:
                conn.receive_data(await reader.read(65536))
            # Any other event (UNKNOWN_TYPE...) is not the answer: keep reading.
    except RemoteProtocolError as exc:
        raise ProbeFailed(f"the worker answered FCGI_GET_VALUES with bad bytes: {exc}") from exc
    except ConnectionError as exc:
        raise ProbeFailed(f"the connection broke before the answer: {exc}") from exc
    finally:
        writer.close()


async def fastcgi_probe(address: Address, within: float) -> WorkerTraits:
    """The pool's default readiness probe (``Probe``): succeed when GET_VALUES is answered;
    return what the answers say (``FCGI_MAX_CONNS``, ``CORRAL_PIPELINE``)."""
    return traits_from_values(await get_values(address, within))


#: Pause between connection attempts while a command has not opened its port yet.
_PORT_RETRY = 0.05


async def port_probe(address: Address, within: float) -> WorkerTraits:
    """Readiness for a command that listens itself (``WorkerSocket.PORT``): its port accepts a
    connection. Refused connections are retried until ``within`` seconds have passed.

    Raises:
        ProbeFailed: nothing accepted a connection in time.
    """
    await _accepts(address, asyncio.get_running_loop().time() + within, within)
    return NO_TRAITS


async def _accepts(address: Address, deadline: float, within: float) -> None:
    """Return once ``address`` accepts a connection (refusals retried until ``deadline``, on
    the loop's clock); else ``ProbeFailed``, saying ``within`` seconds."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                _, writer = await open_stream(address)
        except TimeoutError:
            break
        except OSError as exc:
            last = exc
            if loop.time() + _PORT_RETRY >= deadline:
                break
            await asyncio.sleep(_PORT_RETRY)
            continue
        writer.close()
        return
    where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
    detail = f" (last: {last.strerror or last})" if last is not None else ""
    raise ProbeFailed(f"nothing accepted a connection on {where} within {within:g} s{detail}")


async def fastcgi_port_probe(address: Address, within: float) -> WorkerTraits:
    """Readiness for a FastCGI command that listens itself on its port (``WorkerSocket.PORT``):
    the port accepts a connection (retried while refused), then FCGI_GET_VALUES is answered,
    all within ``within`` seconds. Returns its traits, as ``fastcgi_probe`` does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    await port_probe(address, within)
    return traits_from_values(await get_values(address, max(deadline - loop.time(), 0.001)))


class ListenerTaken(ProbeFailed):
    """Another program listens at a worker's address (its port was taken): a failed start."""

    def __init__(self, address: Address, others: tuple[Holder, ...]) -> None:
        self.address = address
        self.others = others
        where = (
            f"socket {address}"
            if isinstance(address, str)
            else (f"port {address[1]} on {address[0]}")
        )
        holders = "; ".join(holder.describe() for holder in others) or "not visible to Corral"
        super().__init__(f"{where} is held by another process ({holders}), not by the app's worker")


_unknown_logged = False


async def owned_listener(address: Address, pid: int, within: float) -> None:
    """Wait until a connection to ``address`` is accepted by a socket that process ``pid`` or
    one of its descendants holds (``listeners.who_listens``, in a thread: it reads /proc).

    Raises:
        ListenerTaken: another program listens there (a TCP port is then remembered as taken,
            ``ports.PortBook.note_taken``, so that the next start picks another).
        ProbeFailed: nothing of the worker's accepted a connection within ``within`` seconds.
    """
    global _unknown_logged
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        await _accepts(address, deadline, within)
        claim = await asyncio.to_thread(who_listens, address, pid)
        if claim.verdict is Verdict.OTHERS:
            if not isinstance(address, str):
                PORTS.note_taken(address[1])
            raise ListenerTaken(address, claim.others)
        if claim.verdict is Verdict.OURS:
            return
        if claim.verdict is Verdict.UNKNOWN:
            if not _unknown_logged:
                _unknown_logged = True
                _log.warning(
                    "cannot tell which process listens on a worker's address (no /proc and "
                    "psutil cannot list sockets, or the worker is another user's, whose "
                    "descriptors a front that dropped root may not read): a worker is ready "
                    "when its address accepts a connection"
                )
            return
        # NOT_LISTENING: the socket that accepted is gone already; look again.
        if loop.time() + _PORT_RETRY >= deadline:
            where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
            raise ProbeFailed(f"no socket of the worker listened on {where} within {within:g} s")
        await asyncio.sleep(_PORT_RETRY)


async def lost_to_another(address: Address, pid: int) -> ListenerTaken | None:
    """After worker ``pid`` failed to start: whether another program listens at its address
    (its port was taken before it could bind it). The port is then remembered as taken."""
    claim = await asyncio.to_thread(who_listens, address, pid)
    if claim.verdict is not Verdict.OTHERS:
        return None
    if not isinstance(address, str):
        PORTS.note_taken(address[1])
    return ListenerTaken(address, claim.others)


def owned(probe: Probe, pid: int) -> Probe:
    """``probe``, run once the worker's own process tree (process ``pid``) holds the listening
    socket at its address (``owned_listener``), within the same time."""

    async def checked(address: Address, within: float) -> WorkerTraits:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        await owned_listener(address, pid, within)
        return await probe(address, max(deadline - loop.time(), 0.001))

    return checked

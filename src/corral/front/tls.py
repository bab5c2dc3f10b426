"""TLS at the front: the contexts of the https bindings, SNI, and their reloads.

Each https port gets a *listener context* (``listener_context``), the one asyncio's server is
created with. It holds no certificate of its own: its ``sni_callback`` runs for every handshake
(with the client's server name, or None when the client sent none) and switches the
connection to the context of the certificate for that name (``ssl_object.context``). So:

- SNI picks each binding's certificate; a name no binding of the port has, or no name at all,
  gets the port's *default* certificate: the one of its first https binding without host
  names, else of its first https binding (in the configuration's order);
- replacing a certificate means replacing the per-certificate context in the table the callback
  reads: new handshakes use the new one, connections already open keep theirs (nothing is
  dropped). ``update`` does it on a reload (SIGHUP, a configuration change) and ``refresh``
  when something changes in the folders of the certificate and key files (``watch``): a pair
  whose files (symlinks followed) changed is loaded again; one that does not load is logged
  with its file and reason, and the one in use stays;
- session tickets are encrypted with keys OpenSSL draws at random for each context and never
  rotates (Python's ``ssl`` has no ticket-key API); the keys used are the listener context's
  (OpenSSL's ``session_ctx``: the SNI switch does not change it). So rotating them means a new
  listener context: the front server re-creates each https listener's asyncio server over the
  same socket with a fresh one every ``tls_ticket_key_lifetime`` seconds (``FrontServer``).
  Tickets issued before then no longer resume (a full handshake instead).

Modern defaults (``server_context``): TLS 1.2 and 1.3 only; for TLS 1.2 only ECDHE key exchange
with AEAD ciphers (AES-GCM, ChaCha20-Poly1305); no compression, no renegotiation; TLS 1.3's
own suites are all AEAD. OCSP stapling is not done. ALPN offers ``ALPN_PROTOCOLS``.

Private keys are read by OpenSSL straight into a context, in the host process, at start and on
reloads; only the contexts are kept, never the key's bytes, and nothing logs them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from corral.config.model import Binding, ServerConfig
from corral.config.tlsfiles import PairError, load_pair, pair_warnings
from corral.protocol.x509 import CertificateInfo
from corral.runtime.watch import FileWatcher
from corral.runtime.watchrules import Change

logger = logging.getLogger("corral.front.tls")

#: The application protocols offered by ALPN, preferred first (HTTP/2: docs/http2.md); the
#: connection learns the choice from ``negotiated_protocol`` (``front/negotiate.py``).
ALPN_PROTOCOLS: tuple[str, ...] = ("h2", "http/1.1")

#: TLS 1.2 cipher suites: ECDHE key exchange (forward secrecy) with AEAD ciphers only. TLS 1.3
#: suites are not set by this string (OpenSSL's defaults: all AEAD).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

#: (certificate path, key path)
Pair = tuple[str, str]


def server_context() -> ssl.SSLContext:
    """A server context with Corral's defaults and no certificate.

    What ``ssl.create_default_context(Purpose.CLIENT_AUTH)`` sets, less the system's CA
    certificates it loads to verify client certificates (Corral asks for none: loading them
    into every context would cost memory and start time for nothing), and tightened: TLS 1.2
    at least, ``TLS12_CIPHERS``, no renegotiation."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_DH_USE
        | ssl.OP_SINGLE_ECDH_USE
        | ssl.OP_NO_RENEGOTIATION
    )
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return context


def negotiated_protocol(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """The application protocol ALPN chose for a connection ("http/1.1" when none was)."""
    chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    return chosen or "http/1.1"


@dataclass(frozen=True, slots=True)
class _Loaded:
    context: ssl.SSLContext
    info: CertificateInfo
    #: What the files were when they were loaded (a change means: load again).
    signature: tuple[tuple[int, int, int], ...]


def _signature(pair: Pair) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in pair:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class PortCertificates:
    """Which certificate one https port presents for a server name (pure selection)."""

    def __init__(self, default: Pair, names: dict[str, Pair]) -> None:
        self.default = default
        #: Lower-case host name (or "*.suffix") -> pair.
        self.names = names

    @classmethod
    def from_bindings(cls, bindings: Iterable[Binding]) -> PortCertificates:
        """The bindings of one port, in configuration order (https ones only)."""
        names: dict[str, Pair] = {}
        default: Pair | None = None
        first: Pair | None = None
        for binding in bindings:
            pair = (binding.certificate, binding.key)
            first = first or pair
            if not binding.hosts and default is None:
                default = pair
            for host in binding.hosts:
                names.setdefault(host, pair)
        assert first is not None
        return cls(default or first, names)

    def pick(self, server_name: str | None) -> Pair:
        """The pair for a client's SNI name (None: it sent none)."""
        if not server_name:
            return self.default
        name = server_name.lower().rstrip(".")
        found = self.names.get(name)
        if found is not None:
            return found
        # A wildcard binding host ("*.example.com") stands for one or more labels.
        dot = name.find(".")
        while dot >= 0:
            found = self.names.get("*" + name[dot:])
            if found is not None:
                return found
            dot = name.find(".", dot + 1)
        return self.default

    def pairs(self) -> set[Pair]:
        return {self.default, *self.names.values()}


def tls_ports(config: ServerConfig) -> dict[int, PortCertificates]:
    """Every https port of a configuration and its certificates."""
    by_port: dict[int, list[Binding]] = {}
    for site in config.sites:
        for binding in site.bindings:
            if binding.tls:
                by_port.setdefault(binding.port, []).append(binding)
    return {port: PortCertificates.from_bindings(found) for port, found in by_port.items()}


def https_certificates(config: ServerConfig) -> TlsCertificates | None:
    """The https bindings' certificates, loaded (None: no https binding). ``PairError`` for
    a pair that does not load."""
    certificates = TlsCertificates(config)
    if not certificates.ports:
        return None
    certificates.load()
    return certificates


class TlsCertificates:
    """Every https port's certificates, loaded; the listener contexts that present them.

    ``load`` (at start) raises ``PairError`` for a pair that does not load; ``update`` and
    ``refresh`` log it and keep the pair in use."""

    def __init__(self, config: ServerConfig) -> None:
        self.ports = tls_ports(config)
        self._bindings = _https_bindings(config)
        self._loaded: dict[Pair, _Loaded] = {}
        self._watcher: FileWatcher | None = None
        self._files: frozenset[str] = frozenset()
        #: The files and the symlinks on their way (``links_to``): the paths whose changes
        #: mean a refresh.
        self._watched: frozenset[str] = frozenset()
        self._closing: set[asyncio.Task[None]] = set()

    def load(self) -> None:
        """Load every pair (at start): ``PairError`` for the first that does not load."""
        for ports in self.ports.values():
            for pair in sorted(ports.pairs()):
                if pair not in self._loaded:
                    self._loaded[pair] = self._load(pair)
        self._warn(set(self._loaded))

    def listener_context(self, port: int) -> ssl.SSLContext:
        """A new listener context for an https port (new session ticket keys)."""
        context = server_context()
        context.sni_callback = self._selector(port)
        return context

    def _selector(self, port: int) -> _Selector:
        return _Selector(self, port)

    def context_for(self, port: int, server_name: str | None) -> ssl.SSLContext | None:
        certificates = self.ports.get(port)
        if certificates is None:
            return None
        loaded = self._loaded.get(certificates.pick(server_name))
        return loaded.context if loaded is not None else None

    # -- reloads -------------------------------------------------------------------------------

    def update(self, config: ServerConfig) -> None:
        """A reloaded configuration: its certificates from now on (new handshakes). The ports
        that serve TLS are fixed at start: a change there waits for a restart."""
        ports = tls_ports(config)
        if set(ports) != set(self.ports):
            logger.warning(
                "the https ports changed (%s -> %s): restart corral to serve them",
                ", ".join(map(str, sorted(self.ports))) or "none",
                ", ".join(map(str, sorted(ports))) or "none",
            )
            ports = {port: ports[port] for port in ports if port in self.ports}
            for port in self.ports:
                ports.setdefault(port, self.ports[port])
        self._bindings = _https_bindings(config)
        self._reload(ports)
        self._watch_files()

    def refresh(self) -> None:
        """The certificate or key files changed: load the changed pairs again."""
        self._reload(self.ports)
        self._watched = frozenset(link for path in self._files for link in links_to(path))

    def _reload(self, ports: dict[int, PortCertificates]) -> None:
        loaded: dict[Pair, _Loaded] = {}
        fresh: set[Pair] = set()
        keep = dict(ports)
        for port, certificates in ports.items():
            for pair in sorted(certificates.pairs()):
                if pair in loaded:
                    continue
                old = self._loaded.get(pair)
                if old is not None and old.signature == _signature(pair):
                    loaded[pair] = old
                    continue
                try:
                    loaded[pair] = self._load(pair)
                    fresh.add(pair)
                except PairError as exc:
                    if old is not None:
                        logger.error(
                            "%s %s: %s; the certificate in use stays",
                            exc.setting,
                            exc.path,
                            exc.reason,
                        )
                        loaded[pair] = old
                        continue
                    logger.error(
                        "%s %s: %s; port %d keeps its certificates",
                        exc.setting,
                        exc.path,
                        exc.reason,
                        port,
                    )
                    keep[port] = self.ports[port]
                    break
                else:
                    if old is not None:
                        logger.info("certificate %s: loaded again (changed)", pair[0])
        for certificates in keep.values():
            for pair in certificates.pairs():
                if pair not in loaded and pair in self._loaded:
                    loaded[pair] = self._loaded[pair]
        self.ports = keep
        self._loaded = loaded
        self._warn(fresh)

    @staticmethod
    def _load(pair: Pair) -> _Loaded:
        signature = _signature(pair)
        context = server_context()
        info = load_pair(context, *pair)
        return _Loaded(context, info, signature)

    def _warn(self, pairs: set[Pair]) -> None:
        """The warnings (expiry, names, key permissions) of the bindings of newly loaded
        pairs."""
        for binding in self._bindings:
            pair = (binding.certificate, binding.key)
            loaded = self._loaded.get(pair)
            if loaded is not None and pair in pairs:
                for warning in pair_warnings(binding, loaded.info):
                    logger.warning("%s", warning)

    # -- watching the files -----------------------------------------------------------------------

    def watch(self) -> None:
        """Load the certificates again when their files change (new handshakes use them)."""
        self._watch_files()

    def _watch_files(self) -> None:
        files = frozenset(path for pair in self._loaded for path in pair)
        self._watched = frozenset(link for path in files for link in links_to(path))
        if files == self._files and self._watcher is not None:
            return
        self._files = files
        old, self._watcher = self._watcher, None
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        folders = sorted({os.path.dirname(path) for path in files})
        folders = [folder for folder in folders if os.path.isdir(folder)]
        if not folders:
            return
        self._watcher = FileWatcher(
            folders,
            self._classify,
            self._on_change,
            recursive=False,
            name="certificates",
        )
        self._watcher.start()

    def _classify(self, path: str) -> Change | None:
        # The files, and the symlinks they are reached through (certbot's live/ links, a
        # Kubernetes secret's ..data folder link): ``refresh`` then reloads only the pairs
        # whose files, followed, changed. Nothing else in those folders (a log file there
        # would otherwise wake it up for ever).
        return Change.OTHER if path in self._watched else None

    def _on_change(self, changes: list[tuple[Change, str]]) -> None:
        self.refresh()

    async def close(self) -> None:
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            await watcher.close()


class _Selector:
    """A listener context's ``sni_callback``: switch the connection to the certificate for the
    client's server name (every handshake: OpenSSL calls it with None when the client sent no
    name)."""

    __slots__ = ("_certificates", "_port")

    def __init__(self, certificates: TlsCertificates, port: int) -> None:
        self._certificates = certificates
        self._port = port

    def __call__(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> int | None:
        chosen = self._certificates.context_for(self._port, server_name)
        if chosen is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        ssl_object.context = chosen
        return None


def links_to(path: str, limit: int = 40) -> set[str]:
    """``path`` and every symlink met on the way to the file it names: the path's own links
    and those of its folders, through each link's target in turn (at most ``limit`` links)."""
    links: set[str] = set()
    todo = [os.path.abspath(path)]
    while todo and len(links) < limit:
        parts = todo.pop().split(os.sep)
        for end in range(len(parts), 1, -1):
            prefix = os.sep.join(parts[:end])
            if prefix not in links and os.path.islink(prefix):
                links.add(prefix)
                target = os.path.join(os.path.dirname(prefix), os.readlink(prefix))
                todo.append(os.path.normpath(os.path.join(target, *parts[end:])))
    return {path, *links}


def _https_bindings(config: ServerConfig) -> list[Binding]:
    return [binding for site in config.sites for binding in site.bindings if binding.tls]

"""The https bindings' rules and their certificate and key files, checked as the configuration
is loaded (``corral check``, start, reload) and loaded into a context by ``corral.front.tls``.

Rules (see docs/tls.md):

- a port serves TLS or plain HTTP, not both: every binding on one port has the same protocol
  (sites are routed by Host and port, and a listener is one or the other);
- each https binding's certificate and key must load: the files exist and are readable, the
  certificate is PEM, the key is an unencrypted PEM private key, and the key matches the
  certificate. Any of these is an error naming the file, the line and the setting;
- an expired (or not yet valid) certificate, one that does not name a binding's host, and a key
  file other users may read are warnings (``notices``): serving goes on, so that one site's
  expired certificate does not take every site of the server down;
- ``https_redirect`` needs an https binding on the site.

The private key is read by OpenSSL straight into a context; its bytes are never held or logged
here.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat

from corral.config.errors import Problems
from corral.config.model import Binding, Location, SiteConfig
from corral.protocol.x509 import CertificateInfo, read_pem_certificate


class PairError(Exception):
    """A certificate or key that cannot be used: ``setting`` ("certificate" or "key"), the
    file, and why."""

    def __init__(self, setting: str, path: str, reason: str) -> None:
        super().__init__(f"{setting} {path}: {reason}")
        self.setting = setting
        self.path = path
        self.reason = reason


class _Encrypted(Exception):
    pass


def _no_passphrase() -> str:
    # Asked by OpenSSL for an encrypted key: refuse rather than prompt on the terminal.
    raise _Encrypted


def load_pair(context: ssl.SSLContext, certificate: str, key: str) -> CertificateInfo:
    """Load ``certificate`` (PEM, leaf first, then its chain) and ``key`` into ``context``;
    returns what the leaf certificate says. Raises ``PairError``."""
    try:
        with open(certificate, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise PairError("certificate", certificate, _os_reason(exc)) from None
    try:
        info = read_pem_certificate(data)
    except ValueError as exc:
        raise PairError("certificate", certificate, str(exc)) from None
    try:
        os.close(os.open(key, os.O_RDONLY | os.O_CLOEXEC))  # (readable? its bytes: OpenSSL's)
    except OSError as exc:
        raise PairError("key", key, _os_reason(exc)) from None
    try:
        context.load_cert_chain(certificate, key, password=_no_passphrase)
    except _Encrypted:
        raise PairError(
            "key", key, "the key is encrypted: give an unencrypted key readable by the server only"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise PairError("key", key, f"does not match the certificate {certificate}") from None
        raise PairError("key", key, f"not a PEM private key ({exc.reason or exc})") from None
    except OSError as exc:  # (the files changed meanwhile)
        raise PairError("certificate", certificate, _os_reason(exc)) from None
    return info


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    return f"cannot read: {exc.strerror or exc}"


def pair_warnings(
    binding: Binding, info: CertificateInfo, now: dt.datetime | None = None
) -> list[str]:
    """What is wrong but not fatal about a binding's loaded certificate and key."""
    now = now or dt.datetime.now(dt.UTC)
    warnings: list[str] = []
    where = f"{binding.location}: " if binding.location else ""
    if info.not_after < now:
        warnings.append(
            f"{where}certificate {binding.certificate} expired on {info.not_after:%Y-%m-%d} "
            "(clients refuse it)"
        )
    elif info.not_before > now:
        warnings.append(
            f"{where}certificate {binding.certificate} is not valid before "
            f"{info.not_before:%Y-%m-%d %H:%M} UTC"
        )
    if info.dns_names:
        for host in binding.hosts:
            if not info.covers(host):
                warnings.append(
                    f"{where}certificate {binding.certificate} does not name {host} (it names "
                    f"{', '.join(info.dns_names)})"
                )
    try:
        mode = os.stat(binding.key).st_mode
    except OSError:
        return warnings
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{where}key {binding.key} may be read by other users (chmod 600 it)")
    return warnings


def check_tls(problems: Problems, sites: list[SiteConfig], notices: list[str]) -> None:
    """Add every error of the https bindings (and ``https_redirect``) to ``problems``, and the
    warnings to ``notices``."""
    first: dict[int, Binding] = {}
    loaded: dict[tuple[str, str], CertificateInfo | None] = {}
    for site in sites:
        for binding in site.bindings:
            where = binding.location or site.location or Location("?")
            other = first.setdefault(binding.port, binding)
            if other.protocol != binding.protocol:
                problems.add(
                    where,
                    "bindings",
                    f"port {binding.port} is bound as {binding.protocol} here and as "
                    f"{other.protocol} at {other.location or '?'}: a port serves one protocol",
                )
                continue
            if not binding.tls:
                continue
            pair = (binding.certificate, binding.key)
            if pair not in loaded:
                loaded[pair] = _check_pair(problems, where, binding)
            info = loaded[pair]
            if info is not None:
                notices.extend(pair_warnings(binding, info))
        if site.https_redirect and site.https_port() is None:
            problems.add(
                site.location or Location("?"),
                "https_redirect",
                f"site {site.name!r} redirects to https but has no https binding",
            )


def _check_pair(problems: Problems, where: Location, binding: Binding) -> CertificateInfo | None:
    try:
        return load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), binding.certificate, binding.key)
    except PairError as exc:
        problems.add(where, exc.setting, f"{exc.path}: {exc.reason}")
        return None

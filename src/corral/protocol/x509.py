"""What the TLS checks need of an X.509 certificate (pure): its validity period and DNS names.

Python's ``ssl`` module loads a certificate into a context but says nothing about it (the
``cryptography`` package is not a dependency), so the leaf certificate of a PEM file is read
here: enough DER (ITU-T X.690) to walk RFC 5280's ``TBSCertificate`` to ``validity`` and to the
``subjectAltName`` extension. Anything malformed raises ``ValueError``; nothing else is raised.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"

_SEQUENCE = 0x30
_INTEGER = 0x02
_OID = 0x06
_BOOLEAN = 0x01
_OCTETS = 0x04
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_VERSION = 0xA0  # [0] EXPLICIT
_EXTENSIONS = 0xA3  # [3] EXPLICIT
_DNS_NAME = 0x82  # GeneralName [2] IMPLICIT IA5String
_SUBJECT_ALT_NAME = bytes((0x55, 0x1D, 0x11))  # 2.5.29.17


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    not_before: dt.datetime
    not_after: dt.datetime
    #: The subjectAltName's DNS names, lower-case, as written (``*.example.com`` included).
    dns_names: tuple[str, ...]

    def covers(self, host: str) -> bool:
        """Whether a TLS client checking ``host`` accepts the certificate's names (RFC 6125:
        a wildcard stands for exactly one left-most label). A binding's own ``*.`` host name
        is covered by the same wildcard."""
        host = host.lower().rstrip(".")
        for name in self.dns_names:
            if name == host:
                return True
            if name.startswith("*.") and not host.startswith("*."):
                first, dot, rest = host.partition(".")
                if dot and first and rest == name[2:]:
                    return True
        return False


def first_pem_certificate(data: bytes) -> bytes:
    """The DER bytes of the first certificate in a PEM file."""
    start = data.find(_BEGIN)
    if start < 0:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")
    end = data.find(_END, start)
    if end < 0:
        raise ValueError("the PEM certificate has no END line")
    try:
        return base64.b64decode(b"".join(data[start + len(_BEGIN) : end].split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the PEM certificate is not valid base64: {exc}") from None


def _item(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """The DER element at ``pos``: (tag, contents, position after it)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("unsupported DER tag")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def _expect(data: bytes, pos: int, tag: int, what: str) -> tuple[bytes, int]:
    got, contents, after = _item(data, pos)
    if got != tag:
        raise ValueError(f"not a certificate: expected {what}")
    return contents, after


def _time(tag: int, value: bytes) -> dt.datetime:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("bad certificate time") from None
    if not text.endswith("Z") or not text[:-1].isdigit():
        raise ValueError(f"bad certificate time {text!r}")
    if tag == _UTC_TIME and len(text) == 13:
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text  # RFC 5280 4.1.2.5.1
    elif not (tag == _GENERALIZED_TIME and len(text) == 15):
        raise ValueError(f"bad certificate time {text!r}")
    try:
        return dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"bad certificate time {text!r}") from None


def _dns_names(extensions: bytes) -> tuple[str, ...]:
    sequence, _ = _expect(extensions, 0, _SEQUENCE, "extensions")
    pos = 0
    while pos < len(sequence):
        extension, pos = _expect(sequence, pos, _SEQUENCE, "an extension")
        oid, inner = _expect(extension, 0, _OID, "an extension id")
        tag, value, inner = _item(extension, inner)
        if tag == _BOOLEAN:
            tag, value, inner = _item(extension, inner)
        if oid != _SUBJECT_ALT_NAME:
            continue
        if tag != _OCTETS:
            raise ValueError("not a certificate: bad subjectAltName")
        names, _ = _expect(value, 0, _SEQUENCE, "subjectAltName names")
        found: list[str] = []
        at = 0
        while at < len(names):
            tag, name, at = _item(names, at)
            if tag == _DNS_NAME:
                found.append(name.decode("ascii", "replace").lower())
        return tuple(found)
    return ()


def parse_certificate(der: bytes) -> CertificateInfo:
    """The validity period and DNS names of a DER certificate."""
    certificate, _ = _expect(der, 0, _SEQUENCE, "a certificate")
    tbs, _ = _expect(certificate, 0, _SEQUENCE, "tbsCertificate")
    tag, _, pos = _item(tbs, 0)
    if tag == _VERSION:
        tag, _, pos = _item(tbs, pos)
    if tag != _INTEGER:
        raise ValueError("not a certificate: expected a serial number")
    _, pos = _expect(tbs, pos, _SEQUENCE, "a signature algorithm")
    _, pos = _expect(tbs, pos, _SEQUENCE, "an issuer")
    validity, pos = _expect(tbs, pos, _SEQUENCE, "a validity period")
    tag, value, at = _item(validity, 0)
    not_before = _time(tag, value)
    tag, value, _ = _item(validity, at)
    not_after = _time(tag, value)
    names: tuple[str, ...] = ()
    while pos < len(tbs):
        tag, value, pos = _item(tbs, pos)
        if tag == _EXTENSIONS:
            names = _dns_names(value)
    return CertificateInfo(not_before, not_after, names)


def read_pem_certificate(data: bytes) -> CertificateInfo:
    """The first certificate of a PEM file's contents."""
    return parse_certificate(first_pem_certificate(data))

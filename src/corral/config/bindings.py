"""A site's bindings as the files write them: IIS binding strings (``"*:443:host"``) and TOML
tables (``{ address, port, hosts, protocol, certificate, key }``), for the server TOML
(``tomlfile``) and applicationHost.config's ``<binding>`` (``servercfg``)."""

from __future__ import annotations

import os

from corral.config import convert
from corral.config.model import Binding, Location


def parse_binding_information(
    text: str, where: Location, protocol: str = "http", certificate: str = "", key: str = ""
) -> Binding:
    """An IIS ``bindingInformation``: ``"address:port:host"`` (``*`` or nothing: every
    address; ``[v6]``; no host: every host)."""
    address, sep, rest = text.rpartition("]") if text.startswith("[") else ("", "", text)
    if sep:
        address = address + "]"
        rest = rest.lstrip(":")
        port_text, _, host = rest.partition(":")
    else:
        address, _, rest = text.partition(":")
        port_text, _, host = rest.partition(":")
    if not port_text:
        raise ValueError(f'expected "address:port:host", got {text!r}')
    address = address.strip("[]")
    return Binding(
        address="0.0.0.0" if address in ("*", "") else address,
        port=convert.to_port(port_text),
        hosts=(convert.to_host_name(host),) if host else (),
        location=where,
        protocol=protocol,
        certificate=certificate,
        key=key,
    )


def parse_binding(item: object, where: Location) -> Binding:
    """An IIS "address:port:host" string or a table {address, port, hosts, protocol,
    certificate, key} (paths relative to ``where``'s file)."""
    if isinstance(item, str):
        return parse_binding_information(item, where)
    if isinstance(item, dict):
        unknown = set(item) - {"address", "port", "hosts", "protocol", "certificate", "key"}
        if unknown:
            raise ValueError(f"unknown binding key(s): {', '.join(sorted(unknown))}")
        hosts = item.get("hosts", [])
        if isinstance(hosts, str):
            hosts = [hosts]
        if not isinstance(hosts, list):
            raise ValueError("hosts is a list of host names")
        address = item.get("address", "127.0.0.1")
        if not isinstance(address, str):
            raise ValueError("address is a string")
        protocol, certificate, key = binding_tls(
            item.get("protocol", "http"),
            item.get("certificate"),
            item.get("key"),
            os.path.dirname(where.file),
        )
        return Binding(
            address="0.0.0.0" if address == "*" else address,
            port=convert.to_port(item.get("port", 443 if protocol == "https" else 8080)),
            hosts=tuple(convert.to_host_name(host) for host in hosts),
            location=where,
            protocol=protocol,
            certificate=certificate,
            key=key,
        )
    raise ValueError(f"a binding is a string or a table, got {item!r}")


def binding_tls(
    protocol: object,
    certificate: object,
    key: object,
    base: str,
    names: tuple[str, str] = ("certificate", "key"),
) -> tuple[str, str, str]:
    """A binding's protocol and, for https, its certificate and key made absolute against
    ``base`` (the folder of the file that names them). ValueError says what is wrong, with the
    settings spelled as ``names`` (the file's spelling of certificate and key)."""
    if protocol not in ("http", "https"):
        raise ValueError(f'protocol is "http" or "https", not {protocol!r}')
    if protocol == "http":
        if certificate is not None or key is not None:
            raise ValueError(f'{names[0]} and {names[1]} need protocol "https"')
        return "http", "", ""
    paths: list[str] = []
    for name, value in zip(names, (certificate, key), strict=True):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"an https binding needs {name} (the path of a PEM file)")
        paths.append(os.path.normpath(os.path.join(base, os.path.expanduser(value.strip()))))
    return "https", paths[0], paths[1]

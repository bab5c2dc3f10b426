"""The host in this process, with an https binding: its status document lists the https
listener as such, and a renewal of the listener's TLS context (new session ticket keys) leaves
the connection already open working while new ones are served by the new context."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from tests.tlscerts import make_certificate

from corral.app import Host, ServeOptions
from ports import port as leased_port


def test_status_lists_https_and_a_renewal_keeps_open_connections(tmp_path: Path) -> None:
    make_certificate(tmp_path, "a", ["a.example"])
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("static over tls\n")
    https, plain = leased_port(), leased_port()
    path = tmp_path / "server.toml"
    path.write_text(
        "[sites.a]\n"
        f'bindings = [{{ address = "127.0.0.1", port = {https}, protocol = "https", '
        f'certificate = "a.pem", key = "a.key" }}, "127.0.0.1:{plain}"]\n'
        '[sites.a.apps."/"]\nphysical_path = "www"\n'
    )
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE

    async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"GET /index.html HTTP/1.1\r\nHost: a.example\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head + await reader.readexactly(length)

    async def main() -> None:
        host = Host(ServeOptions(path=path))
        await host.start()
        try:
            assert set(host.status().listening) == {
                f"https://127.0.0.1:{https}",
                f"http://127.0.0.1:{plain}",
            }
            assert host.front is not None
            renewal = host.front.tls_renewal
            before = list(renewal.servers)
            reader, writer = await asyncio.open_connection("127.0.0.1", https, ssl=client)
            assert (await get(reader, writer)).endswith(b"static over tls\n")
            await renewal.renew_now()
            assert renewal.renewals == 1
            assert renewal.servers and set(renewal.servers).isdisjoint(before)
            assert all(not server.is_serving() for server in before)
            # The connection accepted by the old server goes on; a new one is served too.
            assert (await get(reader, writer)).endswith(b"static over tls\n")
            fresh = await asyncio.open_connection("127.0.0.1", https, ssl=client)
            assert (await get(*fresh)).endswith(b"static over tls\n")
            for conn in (writer, fresh[1]):
                conn.close()
        finally:
            await host.stop()

    asyncio.run(main())

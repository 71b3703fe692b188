import ssl

import trio
import trustme
from cryptography import x509

from broker.tls import ensure_self_signed, server_context


async def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str):
    """A real TLS handshake and echo over a connected socket pair."""
    a, b = trio.socket.socketpair()
    server = trio.SSLStream(trio.SocketStream(a), server_ctx, server_side=True)
    client = trio.SSLStream(trio.SocketStream(b), client_ctx, server_hostname=hostname)

    async def serve():
        await server.send_all(await server.receive_some(100))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await client.send_all(b"ping")
        assert await client.receive_some(100) == b"ping"
    return client


async def test_trustme_certificate(tmp_path):
    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ctx = server_context(cert, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client = await handshake(ctx, client_ctx, "localhost")
    assert client.version() in ("TLSv1.2", "TLSv1.3")


async def test_self_signed_created_once_and_trusted(tmp_path):
    cert, key = ensure_self_signed(tmp_path, "chat.example")
    assert (key.stat().st_mode & 0o777) == 0o600
    first = cert.read_bytes()
    assert ensure_self_signed(tmp_path, "chat.example") == (cert, key)
    assert cert.read_bytes() == first  # reused on the next start
    parsed = x509.load_pem_x509_certificate(first)
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"chat.example", "*.chat.example", "localhost"} <= set(
        sans.get_values_for_type(x509.DNSName)
    )
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}

    server_ctx = server_context(cert, key)
    for hostname in ("chat.example", "conference.chat.example", "localhost", "127.0.0.1"):
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        await handshake(server_ctx, client_ctx, hostname)


def test_self_signed_regenerated_for_new_domain_or_damage(tmp_path):
    cert, key = ensure_self_signed(tmp_path, "localhost")
    first = cert.read_bytes()
    ensure_self_signed(tmp_path, "other.example")
    assert cert.read_bytes() != first
    cert.write_text("garbage")
    ensure_self_signed(tmp_path, "other.example")
    assert b"BEGIN CERTIFICATE" in cert.read_bytes()
    server_context(cert, key)  # the new key matches the new certificate


def test_self_signed_for_an_ip_domain(tmp_path):
    cert, key = ensure_self_signed(tmp_path, "192.0.2.7")
    first = cert.read_bytes()
    parsed = x509.load_pem_x509_certificate(first)
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.7" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert ensure_self_signed(tmp_path, "192.0.2.7") == (cert, key)
    assert cert.read_bytes() == first

"""Server TLS contexts, and the self-signed certificate that makes STARTTLS work out of
the box when no certificate is configured."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=3650)
_RENEW_BEFORE = datetime.timedelta(days=30)
_LOOPBACK_IPS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """TLS 1.2+ server context with the stdlib's vetted cipher and option defaults."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(cert, key)
    return ctx


def ensure_self_signed(data_dir: str | os.PathLike[str], domain: str) -> tuple[Path, Path]:
    """Create <data_dir>/tls/self-signed.{crt,key} for `domain` once and reuse them.

    They are regenerated when missing, unreadable, near expiry, or not naming `domain`
    (the configured domain changed).
    """
    directory = Path(data_dir) / "tls"
    cert_path, key_path = directory / "self-signed.crt", directory / "self-signed.key"
    if key_path.exists() and _usable(cert_path, domain):
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_atomic(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    cert = _build_cert(key, domain)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def _usable(cert_path: Path, domain: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    names = sans.get_values_for_type(x509.DNSName) + [
        str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
    ]
    now = datetime.datetime.now(datetime.UTC)
    return domain in names and cert.not_valid_after_utc - now > _RENEW_BEFORE


def _build_cert(key: ec.EllipticCurvePrivateKey, domain: str) -> x509.Certificate:
    names: list[x509.GeneralName] = [x509.IPAddress(ip) for ip in _LOOPBACK_IPS]
    try:
        ip = ipaddress.ip_address(domain)
    except ValueError:
        # The wildcard covers the component hosts (conference.<domain>, pubsub.<domain>).
        dns = dict.fromkeys([domain, f"*.{domain}", "localhost"])
        names += [x509.DNSName(d) for d in dns]
    else:
        if ip not in _LOOPBACK_IPS:
            names.append(x509.IPAddress(ip))
        names.append(x509.DNSName("localhost"))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

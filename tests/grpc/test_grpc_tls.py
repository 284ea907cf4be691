"""gRPC over TLS (``TASKFORGE_GRPC_TLS_CERT`` / ``_KEY``) with a certificate made in the test."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpcsupport import Contract, Metadata

from app.config import ConfigError, Settings
from app.probes import grpc_health
from grpc_service.server import create_server


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a self-signed certificate for ``name`` and 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(
    settings: Settings, tmp_path: Path, start_grpc_server: Callable[[Settings], str]
) -> tuple[str, Path]:
    """A TaskForge gRPC server serving TLS; its address and certificate."""
    cert, key = _self_signed(tmp_path, "grpc.taskforge.test")
    address = start_grpc_server(settings.replace(grpc_tls_cert=str(cert), grpc_tls_key=str(key)))
    return address, cert


def test_calls_travel_over_tls_to_the_same_service(
    tls_server: tuple[str, Path], contract: Contract, owner_md: Metadata
) -> None:
    address, cert = tls_server
    credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        stub: SimpleNamespace = contract.stub(channel)
        reply = stub.ListQueues(contract.ListQueuesRequest(), metadata=owner_md, timeout=10)
        assert list(reply.queues) == []
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_a_plaintext_client_gets_no_answer_from_the_tls_port(tls_server: tuple[str, Path]) -> None:
    address, _ = tls_server
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as error:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_health_probe_trusts_the_certificate_and_checks_its_name(
    tls_server: tuple[str, Path], tmp_path: Path
) -> None:
    address, cert = tls_server
    assert grpc_health(address, 10, cert.read_bytes()).ok
    assert grpc_health(address, 10, cert.read_bytes(), "grpc.taskforge.test").ok
    wrong_name = grpc_health(address, 5, cert.read_bytes(), "other.example.com")
    assert not wrong_name.ok and "UNAVAILABLE" in wrong_name.detail
    stranger, _ = _self_signed(tmp_path, "stranger.test")
    assert not grpc_health(address, 5, stranger.read_bytes()).ok


def test_an_unreadable_or_non_pem_certificate_is_refused_before_serving(
    settings: Settings, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path, "grpc.taskforge.test")
    missing = settings.replace(grpc_tls_cert=str(tmp_path / "nope.crt"), grpc_tls_key=str(key))
    with pytest.raises(ConfigError, match=r"TASKFORGE_GRPC_TLS_CERT: cannot read .*nope\.crt"):
        create_server(missing)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(ConfigError, match=r"TASKFORGE_GRPC_TLS_KEY: .* is not a PEM file"):
        create_server(settings.replace(grpc_tls_cert=str(cert), grpc_tls_key=str(garbage)))

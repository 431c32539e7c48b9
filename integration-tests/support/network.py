"""Network parts in front of the moto server for environment tests: a TLS terminator with a
self-signed certificate (for ``AWS_CA_BUNDLE``) and an HTTP forward proxy (for ``HTTP_PROXY``).

Both are real servers on 127.0.0.1 with a thread per connection; they stop when their ``with``
block ends.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificate:
    cert: str  # PEM file: the certificate, which is also its own CA
    key: str  # PEM file: its private key


def self_signed_certificate(directory: Path) -> Certificate:
    """A certificate for ``localhost`` and ``127.0.0.1`` that signs itself (use it as the CA bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(str(cert_path), str(key_path))


def _relay(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(64 * 1024):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class _Server:
    """A listening socket on 127.0.0.1 whose connections are handled on threads."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._open: list[socket.socket] = []
        self.connections = 0

    def __enter__(self) -> _Server:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Closing the listener ends the accept loop; closing the accepted sockets ends their
        # relay threads (clients may keep pooled connections open indefinitely).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._acceptor.join()
        for connection in self._open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        raise NotImplementedError


class TLSTerminator(_Server):
    """``https://localhost:<port>`` in front of a plain HTTP server."""

    def __init__(self, upstream: tuple[str, int], certificate: Certificate) -> None:
        super().__init__()
        self._upstream = upstream
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certificate.cert, certificate.key)
        self.handshake_failures = 0

    def __enter__(self) -> TLSTerminator:
        super().__enter__()
        return self

    def _serve(self, connection: socket.socket) -> None:
        try:
            client = self._context.wrap_socket(connection, server_side=True)
        except (OSError, ssl.SSLError):
            self.handshake_failures += 1
            connection.close()
            return
        with client, socket.create_connection(self._upstream) as upstream:
            back = threading.Thread(target=_relay, args=(upstream, client), daemon=True)
            back.start()
            _relay(client, upstream)
            back.join()


@dataclass
class ProxiedRequest:
    method: str
    target: str  # as the client sent it: an absolute URL for a forward proxy


class ForwardProxy(_Server):
    """An HTTP forward proxy (absolute-form requests, one request per connection) that records
    what it forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[ProxiedRequest] = []

    def __enter__(self) -> ForwardProxy:
        super().__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        super().__exit__(exc_type, exc, tb)

    @staticmethod
    def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(64 * 1024)
            if not more:
                raise ConnectionError("closed before a complete head")
            data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError, ConnectionError):
            head, rest = self._read_head(connection)
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            self.requests.append(ProxiedRequest(method, target))
            url = urlsplit(target)
            headers = [line for line in lines[1:] if not line.lower().startswith(("connection:", "proxy-"))]
            length = next(
                (int(line.split(":", 1)[1]) for line in headers if line.lower().startswith("content-length:")), 0
            )
            body = rest
            while len(body) < length:
                more = connection.recv(64 * 1024)
                if not more:
                    raise ConnectionError("closed inside a request body")
                body += more
            path = url.path + (f"?{url.query}" if url.query else "")
            forwarded = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
            with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80)) as upstream:
                upstream.sendall(forwarded.encode("latin-1") + body)
                response_head, response_rest = self._read_head(upstream)
                response_lines = [
                    line
                    for line in response_head.decode("latin-1").split("\r\n")
                    if not line.lower().startswith("connection:")
                ]
                connection.sendall(("\r\n".join([*response_lines, "Connection: close", "", ""])).encode("latin-1"))
                connection.sendall(response_rest)
                _relay(upstream, connection)

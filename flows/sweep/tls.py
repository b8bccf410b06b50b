"""The certificates that keep a sweep pool's Dask scheduler closed: one CA, and one certificate it signs that the
scheduler, its workers and its clients (the sweep's flow runs) all present (mutual TLS: each side checks the
other's against the CA). Whoever lacks the CA's signature cannot connect, submit a point or read one.

``bp stack up`` makes them in DIR/dask; compose's one-shot ``certs`` job makes them in a volume
(``python -m flows.sweep.tls DIR``); a machine that joins the pool (``bp sweep-worker --certs DIR``) is
given a copy. Every file is 0600 in a 0700 directory: the key is the pool's only password.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

CA, CERT, KEY = "ca.pem", "member.pem", "member-key.pem"
DAYS = 3650  # the certificates are the pool's, renewed by making new ones (the files are replaced, not edited)
SCHEDULER_ENV, CERTS_ENV = "BP_DASK_SCHEDULER", "BP_DASK_CERTS"  # what a pool's flow runs learn their cluster from


def make(directory: Path) -> Path:
    """A new CA and member certificate in ``directory`` (created 0700; files 0600), unless all three are there."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    if all((directory / name).is_file() for name in (CA, CERT, KEY)):
        return directory
    from cryptography.hazmat.primitives import serialization

    ca_key, ca_cert = _pair("bp sweep pool CA", None)
    key, cert = _pair("bp sweep pool member", (ca_key, ca_cert))
    pem = serialization.Encoding.PEM
    _write(directory / KEY, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    _write(directory / CERT, cert.public_bytes(pem))
    _write(directory / CA, ca_cert.public_bytes(pem))  # the CA's key is not kept: no one signs more members
    return directory


def _pair(name: str, issuer):
    """A key and its certificate named ``name``: self-signed as a CA when ``issuer`` is None, else signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=DAYS)))
    if issuer is None:
        builder = builder.issuer_name(subject).add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        return key, builder.sign(key, hashes.SHA256())
    issuer_key, issuer_cert = issuer
    builder = (builder.issuer_name(issuer_cert.subject)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), False))
    return key, builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def missing(directory: Path) -> str | None:
    """What is wrong with a certificates directory, in one line (None: the three files are there and readable)."""
    for name in (CA, CERT, KEY):
        path = directory / name
        if not path.is_file():
            return f"{path}: no such file (a pool's certificates are {CA}, {CERT} and {KEY}: copy its directory)"
        if not os.access(path, os.R_OK):
            return f"{path}: not readable by this user"
    return None


def security(directory: Path):
    """Dask's Security for any member of the pool whose certificates are in ``directory``: TLS required, both
    sides verified against the CA."""
    from distributed.security import Security

    ca, cert, key = (str(directory / name) for name in (CA, CERT, KEY))
    return Security(require_encryption=True, tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key)


def scheduler_argv(directory: Path, host: str, port: int) -> list[str]:
    """The command that runs the pool's scheduler with these certificates, listening on ``host:port`` (TLS only)."""
    ca, cert, key = (str(directory / name) for name in (CA, CERT, KEY))
    return [sys.executable, "-m", "distributed.cli.dask_scheduler", "--protocol", "tls", "--host", host,
            "--port", str(port), "--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key, "--no-dashboard"]


def from_environment():
    """The pool's scheduler address and Security, as a pool's worker hands them to its flow runs; None if not set."""
    address = os.environ.get(SCHEDULER_ENV)
    if not address:
        return None
    certs = os.environ.get(CERTS_ENV)
    return address, security(Path(certs)) if certs else None


if __name__ == "__main__":  # compose's one-shot job: python -m flows.sweep.tls DIR
    made = make(Path(sys.argv[1]))
    print(f"certificates of the sweep pool's scheduler in {made}")

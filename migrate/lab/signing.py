"""The lab's evidence signing key: an ed25519 private key the lab spec names
(`evidence.signing_key`), made once, 0600 from its first byte."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from migrate.lab.files import write_private
from migrate.lab.layout import LabPaths


def ensure_signing_key(paths: LabPaths) -> None:
    path = paths.secrets / "evidence-signing.pem"
    if path.exists():
        return
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    write_private(path, pem.decode())

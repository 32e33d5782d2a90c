"""Attestations: one in-toto Statement v1 per phase of the wave, in a DSSE envelope signed with
ed25519 (the `cryptography` package). The subjects are the pack's files with their SHA-256; the
predicate says which phase and run they prove. Verification needs only the public key, which
the pack carries in keys/ (and which an assessor should compare with the one the Comune
published: a pack can carry any key)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from migrate.errors import ConfigError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/comune/migrate/evidence/phase/v1"


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, so the type cannot be swapped."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def load_private(path: Path, field: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{field}: {path}: not a readable unencrypted PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{field}: {path}: an ed25519 key is needed")
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public: bytes) -> str:
    """The SHA-256 of the public key's PEM: how the pack and its envelopes name the key."""
    return hashlib.sha256(public).hexdigest()


def statement(subjects: dict[str, str], phase: str, run: dict) -> bytes:
    body = {"_type": STATEMENT_TYPE,
            "subject": [{"name": name, "digest": {"sha256": sha}} for name, sha in sorted(subjects.items())],
            "predicateType": PREDICATE_TYPE, "predicate": {"phase": phase, **run}}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def envelope(key: Ed25519PrivateKey, body: bytes) -> dict:
    signature = key.sign(pae(PAYLOAD_TYPE, body))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
            "signatures": [{"keyid": key_id(public_pem(key)), "sig": base64.b64encode(signature).decode()}]}


def open_envelope(data: dict, public: bytes) -> dict:
    """The statement inside, once its signature checks with `public` (PEM); ValueError if not."""
    try:
        key = serialization.load_pem_public_key(public)
        body = base64.b64decode(data["payload"], validate=True)
        sig = base64.b64decode(data["signatures"][0]["sig"], validate=True)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ValueError(f"malformed envelope ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PublicKey) or data.get("payloadType") != PAYLOAD_TYPE:
        raise ValueError("not an ed25519 in-toto envelope")
    if data["signatures"][0].get("keyid") != key_id(public):
        raise ValueError("signed with another key")
    try:
        key.verify(sig, pae(PAYLOAD_TYPE, body))
    except InvalidSignature:
        raise ValueError("signature does not verify") from None
    return json.loads(body)

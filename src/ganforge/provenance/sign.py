"""Model identities and signed image metadata: the second, provable layer of provenance.

Every export gets a model id (8 hex digits, the one the invisible mark carries) and an Ed25519 key
pair (through `cryptography`). The public key goes into the exported `config.json`; the private key
stays on the owner's machine, in `GANFORGE_HOME/keys/ID.pem` (default `~/.ganforge`), readable only by
its owner, so the exported folder can be shared or released without it. Images made where the key is
are signed; images made from a copy elsewhere still carry the mark, but no signature.

A signed PNG holds two text chunks, as C2PA's manifests do in spirit: `ganforge:provenance`, a JSON
manifest (model id and name, seed, software, time, and the SHA-256 of the pixels: the hard binding),
and `ganforge:signature`, the Ed25519 signature of that manifest's canonical bytes. The invisible mark
is the soft binding: it survives when the metadata is stripped.

The local register, `GANFORGE_HOME/models.json`, maps each model id made or released here to its name,
folder and public key, so `ganforge verify` can name the model a mark points to and check signatures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ganforge.errors import GanforgeError
from ganforge.files import write_bytes_atomic, write_json_atomic

MANIFEST_KEY, SIGNATURE_KEY = "ganforge:provenance", "ganforge:signature"


class ProvenanceError(GanforgeError, ValueError):
    pass


def home() -> Path:
    """Where ganforge keeps what belongs to this user, not to a run: keys and the model register."""
    return Path(os.environ.get("GANFORGE_HOME") or Path.home() / ".ganforge")


# --- identities ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A model's id and public key, as its config.json records them; the private key when it is here."""

    model_id: str
    public_key: str  # base64 of the 32 raw bytes
    private_key: Ed25519PrivateKey | None = None

    @property
    def can_sign(self) -> bool:
        return self.private_key is not None


def new_identity() -> Identity:
    """A fresh model id and key pair; the private key is written to GANFORGE_HOME/keys/ID.pem (mode 600)."""
    keys = home() / "keys"
    while True:
        model_id = secrets.token_hex(4)
        if model_id != "ffffffff" and not (keys / f"{model_id}.pem").exists():
            break
    private = Ed25519PrivateKey.generate()
    keys.mkdir(parents=True, exist_ok=True)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = keys / f"{model_id}.pem"
    write_bytes_atomic(path, pem)
    os.chmod(path, 0o600)
    return Identity(model_id, _public_text(private.public_key()), private)


def run_identity(run: Path) -> Identity:
    """A run's identity, RUN/identity.json (its id and public key): made on first use, the same for every
    export of the run and for its fingerprint."""
    path = Path(run) / "identity.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return Identity(record["model_id"], record["public_key"], _private_key(record["model_id"], record["public_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    identity = new_identity()
    write_json_atomic(path, {"model_id": identity.model_id, "public_key": identity.public_key})
    return identity


def identity_of(provenance: dict | None) -> Identity | None:
    """The identity an exported config's `provenance` block names, with its private key if this machine
    holds it; None for exports made before ganforge had identities."""
    if not provenance or "model_id" not in provenance:
        return None
    model_id, public = provenance["model_id"], provenance["public_key"]
    return Identity(model_id, public, _private_key(model_id, public))


def _private_key(model_id: str, public: str) -> Ed25519PrivateKey | None:
    path = home() / "keys" / f"{model_id}.pem"
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None  # not the owner's machine, or the key file is damaged: images go out unsigned
    if not isinstance(key, Ed25519PrivateKey) or _public_text(key.public_key()) != public:
        return None
    return key


def _public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


# --- the register -------------------------------------------------------------------------------------


def register(model_id: str, public_key: str, name: str, folder: Path, **extra) -> None:
    """Record a model made or released here, so `verify` can name it later."""
    models = registered()
    entry = models.get(model_id, {})
    entry.update({"public_key": public_key, "name": name, "folder": str(Path(folder).resolve()), **extra})
    models[model_id] = entry
    home().mkdir(parents=True, exist_ok=True)
    write_json_atomic(home() / "models.json", models)


def registered() -> dict[str, dict]:
    try:
        models = json.loads((home() / "models.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return models if isinstance(models, dict) else {}


# --- signed manifests ---------------------------------------------------------------------------------


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 of an image's pixels with their shape: survives re-saving, not a change of one pixel."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


def canonical(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(manifest: dict, key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(canonical(manifest))).decode("ascii")


def signature_holds(manifest: dict, signature: str, public_key: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), canonical(manifest))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True

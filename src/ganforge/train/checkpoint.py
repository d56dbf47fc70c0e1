"""Checkpoints: the full training state, written atomically, the last N kept, loaded without pickle.

A checkpoint holds everything a resumed run needs to continue exactly: G, D, the EMA generator,
both optimisers and grad scalers, the counters, every random generator's state (torch, CUDA,
NumPy, Python), the data order, and the config. It is written to a temporary file, flushed and
renamed over the final name, so a crash or kill -9 at any moment leaves the previous checkpoint
intact. Loading uses `torch.load(weights_only=True)`: tensors and plain containers only.

PyTorch's loader does not check its zip records' CRCs, so a damaged file can load as garbage (NaN
weights, black images). Each checkpoint therefore carries a SHA-256 of its own contents (every tensor's
bytes, dtype and shape, and every other value, in a fixed order); loading recomputes it and refuses a
file whose contents changed.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.files import atomic_write

PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
BEST = "best.pt"  # a copy of the checkpoint with the best metric so far; never pruned


class CheckpointError(GanforgeError):
    pass


def checkpoint_path(folder: Path, images_seen: int) -> Path:
    return folder / f"checkpoint-{images_seen:09d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.match(p.name))


def save_checkpoint(state: dict, folder: Path, images_seen: int, keep: int) -> Path:
    target = _write_atomic(state, checkpoint_path(folder, images_seen))
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def save_best(state: dict, folder: Path) -> Path:
    """Write `state` as the run's best checkpoint (kept apart from the last N)."""
    return _write_atomic(state, folder / BEST)


def _write_atomic(state: dict, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, what=f"the checkpoint {target.name}") as handle:
        torch.save({**state, "digest": state_digest(state)}, handle)
    return target


def state_digest(state) -> str:
    """SHA-256 of a checkpoint's contents: the same before saving and after loading, whatever the file layout."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def _feed(digest, value) -> None:
    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=str):
            if key != "digest":
                digest.update(repr(str(key)).encode())
                _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                              "It is damaged or incomplete: delete it to use the one before.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a ganforge checkpoint. Delete it to use the one before.")
    recorded = state.pop("digest", None)  # checkpoints written before digests existed have none
    if recorded is not None and recorded != state_digest(state):
        raise CheckpointError(f"{path} is damaged: its contents no longer match the checksum written with it "
                              "(a disk or copy error). Delete it to use the one before.")
    return state


def latest_loadable(folder: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; damaged ones are skipped with a warning."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            print(f"warning: {str(err).split(' Delete it')[0]} Skipped: using the one before.", file=sys.stderr)
    return None


def run_checkpoint(run: Path, which: str = "best") -> tuple[Path, dict]:
    """The run's best checkpoint (or the last when none is marked best, or when which='last')."""
    folder = Path(run) / "checkpoints"
    if which not in ("best", "last"):
        raise CheckpointError(f"which={which!r}: choose 'best' or 'last'.")
    if which == "best" and (folder / BEST).is_file():
        return folder / BEST, load_checkpoint(folder / BEST)
    found = latest_loadable(folder)
    if found is None:
        raise CheckpointError(f"{run} has no checkpoint yet: train it first (ganforge train ... or --resume).")
    return found


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _python_state_to_tensor(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(_python_state_from_tensor(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_tensor(state) -> dict:
    version, internal, gauss = state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_tensor(state: dict):
    return state["version"], tuple(int(v) for v in state["internal"].tolist()), state["gauss"]

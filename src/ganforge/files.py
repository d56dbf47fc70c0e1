"""File helpers every layer shares: atomic writes that clean up after themselves, digests, and the one
reader for the jsonl logs ganforge writes.

- `atomic_write(path)` writes through `path + ".tmp"` and renames it into place, so a crash, Ctrl-C or
  a full disk never leaves half a file under the real name; on any error the temporary file is removed
  and a full disk becomes a `DiskFullError` that says so. A `.tmp` beside one of ganforge's files is
  always ganforge's own (see `TMP_SUFFIX`), so reruns may delete it.
- `read_jsonl(path, check)` skips and counts lines that are not what was written (cut by a crash,
  edited by hand, a number turned to text) and warns once, instead of crashing whatever reads them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ganforge.errors import GanforgeError

TMP_SUFFIX = ".tmp"
# the picture files a folder of images is read for (metrics, translate)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class DiskFullError(GanforgeError, OSError):
    """A write failed for lack of space; the message names the folder and how much is free."""


def disk_full_message(path: Path, what: str = "it") -> str:
    folder = existing_parent(Path(path))
    free = shutil.disk_usage(folder).free if folder else 0
    return (f"The disk holding {folder or path} is full ({free / 2**20:.0f} MiB free), so {what} could not be "
            "written; nothing was left half-written. Free some space (or choose a folder on another disk) and run "
            "the same command again.")


def existing_parent(path: Path) -> Path | None:
    """`path` itself or its nearest ancestor that exists (None when not even the root does)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def is_disk_full(exc: BaseException) -> bool:
    """True for the ways a full disk shows itself: ENOSPC, numpy's short write, torch's failed writer."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno is None and "requested" in text and "written" in text:
        return True  # numpy's tofile: "N requested and M written"
    return isinstance(exc, RuntimeError) and ("unexpected pos" in text or "failed writing" in text
                                              or "No space left" in text)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, what: str | None = None) -> Iterator[Any]:
    """Open `path + ".tmp"` for writing; on success flush, fsync and rename it over `path`.

    On any error (including KeyboardInterrupt) the temporary file is removed; a full disk is raised
    as `DiskFullError`. The final file gets the usual permissions (0666 less the umask)."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(disk_full_message(path.parent, what or path.name)) from exc
        raise


def _default_permissions(path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """JSON through a temporary file and a rename, so a crash never leaves half a file."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=1)
        handle.write("\n")


def save_image_atomic(image, path: str | os.PathLike, **options) -> None:
    """A PIL image (or a matplotlib figure) to `path` atomically, in the format its suffix names."""
    path = Path(path)
    with atomic_write(path) as handle:
        if hasattr(image, "savefig"):
            image.savefig(handle, format=path.suffix.lstrip(".").lower() or "png", **options)
        else:
            from PIL import Image

            image.save(handle, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"), **options)


def remove_stale_tmp(folder: Path, names: tuple[str, ...]) -> list[str]:
    """Delete the `.tmp` files ganforge leaves only when killed mid-write (`name.tmp` for each name)."""
    removed = []
    for name in names:
        tmp = folder / (name + TMP_SUFFIX)
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp.name)
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- jsonl ---------------------------------------------------------------------------------------

Check = Callable[[dict], str | None]  # a record -> None when it is well formed, else what is wrong


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numbers_check(required: tuple[str, ...] = (), text: tuple[str, ...] = (), nested: tuple[str, ...] = ()) -> Check:
    """A check for records of numbers: `required` keys must be there; every other value must be a number,
    None, or (for keys in `text`) anything; keys in `nested` hold mappings of numbers."""

    def check(record: dict) -> str | None:
        for key in required:
            if not is_number(record.get(key)):
                return f"{key!r} is missing or not a number"
        for key, value in record.items():
            if key in text or key in required or value is None or isinstance(value, bool):
                continue
            if key in nested:
                if not isinstance(value, dict):
                    return f"{key!r} is not a mapping"
                bad = [k for k, v in value.items() if v is not None and not is_number(v)]
                if bad:
                    return f"{key}.{bad[0]} is not a number"
            elif not is_number(value):
                return f"{key!r} is {value!r}, not a number"
        return None

    return check


def read_jsonl(path: str | os.PathLike, check: Check | None = None, *, warn: bool = True) -> list[dict]:
    """The well-formed records of a jsonl file (none when it is missing).

    A line that is not JSON, not an object, or fails `check` is skipped and counted; when any were,
    one warning on stderr says how many and why (a log cut by a crash, or edited by hand)."""
    path = Path(path)
    if not path.is_file():
        return []
    records, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad.append((number, "not JSON"))
                continue
            problem = "not a JSON object" if not isinstance(record, dict) else (check(record) if check else None)
            if problem:
                bad.append((number, problem))
            else:
                records.append(record)
    if bad and warn:
        first = "; ".join(f"line {n}: {why}" for n, why in bad[:3])
        print(f"warning: {path}: skipped {len(bad)} malformed line(s) ({first}{'; ...' if len(bad) > 3 else ''}). "
              "The other records are used.", file=sys.stderr)
    return records


def rewrite_jsonl(path: Path, keep: Callable[[dict], bool]) -> int:
    """Keep only the records for which `keep` is true (and drop a last line cut by a kill; other lines that
    are not JSON stay as they are); returns how many lines were dropped. Used on resume, to remove the rows a killed run wrote after its last checkpoint."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept, dropped = [], 0
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                dropped += 1  # the last line, cut by the kill
            else:
                kept.append(line)  # damaged by other means: left as it is (readers skip it with a warning)
            continue
        if isinstance(record, dict) and not keep(record):
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return dropped

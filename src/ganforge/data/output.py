"""The output folder of `prepare`: what in it is ganforge's, and how it is cleared, made and checked.

ganforge deletes only what it made. A folder with a manifest is a finished preparation; without one,
files with the outputs' names are ganforge's only beside unfinished work (`.partial` with its plan),
which is why that plan is written before any output is written or cleared without a manifest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ganforge.data.format import FORMAT_NAME, MANIFEST, REPORT, write_json_atomic
from ganforge.errors import GanforgeError
from ganforge.files import TMP_SUFFIX, DiskFullError, disk_full_message, existing_parent, is_disk_full, remove_stale_tmp

PARTIAL = ".partial"
OUTPUT_FILES = (MANIFEST, REPORT, "images.npy", "labels.npy", "attributes.npy", "points.npy", "contact-sheet.png",
                "a.npy", "b.npy")  # a.npy, b.npy: paired and unpaired datasets
OUTPUTS = (*OUTPUT_FILES, PARTIAL)


class PrepareError(GanforgeError):
    pass


def previous_manifest(out: Path) -> dict | None:
    """The manifest of an earlier preparation in `out`, or None; refuses folders ganforge did not make."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise PrepareError(f"{out} exists and is not a folder. Choose another output.")
    manifest_file = out / MANIFEST
    if manifest_file.exists():
        manifest = ganforge_manifest(manifest_file)
        if manifest is None:
            raise PrepareError(f"{out} holds a {MANIFEST} that ganforge did not write (or that is damaged). "
                               "Choose a new or empty output folder; ganforge never deletes files it did not make.")
        return manifest
    unfinished = _is_work_folder(out / PARTIAL) and (out / PARTIAL / "plan.json").is_file()
    foreign = sorted(p.name for p in out.iterdir() if not _is_ours(p, unfinished))
    if foreign:
        raise PrepareError(f"{out} is not empty and holds no prepared dataset ({', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}). Choose a new or empty folder.")
    return None


def ganforge_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME else None


def _is_ours(path: Path, unfinished: bool) -> bool:
    """In a folder without a manifest: ganforge's own file or folder, safe to delete.

    An output's name alone proves nothing (a user may keep an images.npy of their own); it is ganforge's
    when the folder also holds unfinished work with its plan (`unfinished`), and `name.tmp` is such a file
    a kill -9 left mid-write. The one exception is the report a run that found no usable image leaves
    alone, recognised by what it holds.
    """
    name = path.name
    if name == PARTIAL:
        return _is_work_folder(path)
    if name == REPORT and not unfinished:
        return path.is_file() and not path.is_symlink() and _is_failed_report(path)
    if name.endswith(TMP_SUFFIX):
        name = name[: -len(TMP_SUFFIX)]
    return unfinished and name in OUTPUT_FILES and path.is_file()


def _is_work_folder(path: Path) -> bool:
    """`.partial` as ganforge leaves it: a real folder with its plan, or empty (a kill before the plan)."""
    if not path.is_dir() or path.is_symlink():
        return False
    return (path / "plan.json").is_file() or {p.name for p in path.iterdir()} <= {"plan.json" + TMP_SUFFIX}


def _is_failed_report(path: Path) -> bool:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(report, dict) and set(report) == {"source", "included", "skipped"}
            and report["included"] == [] and isinstance(report["skipped"], list))


def mark_unfinished(out: Path, plan: dict | None = None) -> None:
    """Write `.partial/plan.json` before ganforge's outputs are written or cleared without a manifest.

    It is what makes those outputs recognisably ganforge's if a kill stops the run halfway
    (see `_is_ours`). A plan of None matches no real one, so no chunk is trusted on resume.
    """
    make_folder(out / PARTIAL, out)
    write_json_atomic(out / PARTIAL / "plan.json", plan if plan is not None else {"clearing": True})


def clear_output(out: Path) -> None:
    """Remove an earlier preparation; a kill halfway leaves an unfinished folder, never a foreign-looking one."""
    mark_unfinished(out)
    remove_leftovers(out, OUTPUTS)


def remove_leftovers(out: Path, names: tuple[str, ...]) -> None:
    """Delete ganforge's own files from an earlier, unfinished run: `names` and every output's `.tmp`."""
    remove_stale_tmp(out, OUTPUT_FILES)
    for name in names:
        target = out / name
        if name == PARTIAL and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif name != PARTIAL and target.is_file():
            target.unlink()


def check_writable(out: Path) -> None:
    """Refuse early an output that cannot be created or written (a read-only disk, another user's folder)."""
    folder = existing_parent(out)
    if folder is None:
        return  # let mkdir say what is wrong
    if not folder.is_dir():
        raise PrepareError(f"The output {out} cannot be created: {folder} is a file, not a folder. "
                           "Choose another output folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PrepareError(unwritable_message(out, folder, "no permission, or a read-only disk"))


def make_folder(path: Path, out: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(path, "the output folder")) from None
        if isinstance(exc, FileExistsError | NotADirectoryError):
            raise PrepareError(f"The output {out} cannot be created: {exc.filename or path} is in the way (a file, "
                               "or a link to nowhere). Choose another output folder.") from None
        raise PrepareError(unwritable_message(out, existing_parent(path) or path, exc)) from None


def unwritable_message(out: Path, folder: Path, reason) -> str:
    if isinstance(reason, OSError):
        reason = reason.strerror or str(reason)
    return (f"Cannot write the output {out}: ganforge may not create files in {folder} ({str(reason).lower()}). "
            "Choose an output folder you can write to (for example one in your home folder), "
            "or ask the owner of that folder for access.")


def reuse_or_clear(out: Path, previous: dict | None, settings: dict, digest: str | None, overwrite: bool) -> bool:
    """True when `out` already holds exactly this preparation. Clears another one only on request."""
    if previous is None:
        if overwrite and out.is_dir():
            remove_leftovers(out, OUTPUTS)  # an unfinished one too (only ours: see previous_manifest)
        return False
    old = previous.get("settings") or {}
    if old == settings and previous.get("files_digest") == digest and not overwrite:
        return True
    if not overwrite:
        changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
        why = f"other settings ({'; '.join(changed)})" if changed else \
            "the source as it was before (files were added, removed or changed since)"
        raise PrepareError(f"{out} already holds a dataset prepared from {why}. "
                           "Use --overwrite to prepare it again, or choose another output folder.")
    clear_output(out)  # the manifest first: a kill while clearing leaves an unfinished folder
    return False

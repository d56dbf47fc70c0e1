"""Enumerate the files of a source — a folder tree, a zip, or a tar(.gz) archive — accounting for each.

Scanning never reads image data and never writes anything. Each entry found becomes either a
`SourceFile` to decode or a `Skipped` with a reason, so that the report names every file.
Folder scans follow symbolic links but never loop: a folder reached twice is skipped.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ganforge.errors import GanforgeError

# Files operating systems leave behind; they are never images, so they are reported as litter.
_LITTER_NAMES = {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", ".directory", "icon\r"}


class SourceError(GanforgeError):
    """The source as a whole cannot be read (not a file's problem): a clear message for the user."""


@dataclass(frozen=True)
class SourceFile:
    name: str  # path relative to the source root, "/"-separated; shown in the report
    locator: str  # how to read it: an absolute path (folders) or the member name (archives)
    size: int
    stamp: int = 0  # changes when the content does (mtime, or a zip member's CRC): for resuming


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str
    detail: str = ""


def is_litter(name: str) -> bool:
    parts = PurePosixPath(name).parts
    base = parts[-1].lower() if parts else ""
    return base in _LITTER_NAMES or base.startswith("._") or "__MACOSX" in parts


def archive_kind(path: Path) -> str | None:
    """"zip", "tar" or None, decided by content (an archive renamed to .jpg is still an archive)."""
    if not path.is_file():
        return None
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError):
        return None
    return None


class FolderSource:
    kind = "folder"

    def __init__(self, root: Path):
        self.root = root

    def scan(self) -> tuple[list[SourceFile], list[Skipped]]:
        files: list[SourceFile] = []
        skipped: list[Skipped] = []
        root_stat = os.stat(self.root)
        visited = {(root_stat.st_dev, root_stat.st_ino)}
        real_dirs = [(str(self.root), "")]
        linked_dirs: list[tuple[str, str, tuple[int, int]]] = []
        # Real folders first, links to folders after: a folder reached both ways is scanned under
        # its own name, and the link is the entry reported as skipped.
        while real_dirs or linked_dirs:
            if real_dirs:
                folder, prefix = real_dirs.pop()
            else:
                folder, prefix, key = linked_dirs.pop(0)
                if key in visited:
                    skipped.append(self._repeated_link(folder, prefix.rstrip("/")))
                    continue
                visited.add(key)
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                skipped.append(Skipped(prefix.rstrip("/") or ".", "unreadable folder", exc.strerror or ""))
                continue
            for entry in entries:
                self._classify(entry, prefix + entry.name, visited, real_dirs, linked_dirs, files, skipped)
        files.sort(key=lambda f: f.name)
        skipped.sort(key=lambda s: s.source)
        return files, skipped

    @staticmethod
    def _classify(entry, name, visited, real_dirs, linked_dirs, files, skipped) -> None:
        try:
            is_link = entry.is_symlink()
            st = os.stat(entry.path)  # follows links
        except FileNotFoundError:
            skipped.append(Skipped(name, "dangling symlink", _link_target(entry.path)))
            return
        except OSError as exc:
            reason = "symlink loop" if is_link else "unreadable"
            skipped.append(Skipped(name, reason, exc.strerror or str(exc)))
            return
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if is_link:
                linked_dirs.append((entry.path, name + "/", key))
            elif key not in visited:  # (a bind mount can show one folder twice)
                visited.add(key)
                real_dirs.append((entry.path, name + "/"))
        elif stat.S_ISREG(st.st_mode):
            if is_litter(name):
                skipped.append(Skipped(name, "os litter"))
            else:
                files.append(SourceFile(name, os.path.abspath(entry.path), st.st_size, st.st_mtime_ns))
        else:
            skipped.append(Skipped(name, "not a regular file", "a device, pipe or socket"))

    @staticmethod
    def _repeated_link(path: str, name: str) -> Skipped:
        target = os.path.realpath(path)
        parent = os.path.realpath(os.path.dirname(path))
        if parent == target or parent.startswith(target.rstrip(os.sep) + os.sep):
            return Skipped(name, "symlink loop", f"{_link_target(path)}, a folder that contains this link")
        return Skipped(name, "link to a folder already scanned", _link_target(path))

    def read(self, file: SourceFile) -> bytes:
        with open(file.locator, "rb") as handle:
            return handle.read()


class ZipSource:
    kind = "zip"

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None  # opened lazily, once per worker process

    def scan(self) -> tuple[list[SourceFile], list[Skipped]]:
        files, skipped = [], []
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise SourceError(f"{self.path} is not a readable zip archive ({exc}).") from None
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename
            if is_litter(name):
                skipped.append(Skipped(name, "os litter"))
            elif info.flag_bits & 0x1:
                skipped.append(Skipped(name, "unreadable", "encrypted zip member"))
            else:
                files.append(SourceFile(name, name, info.file_size, info.CRC))
        files.sort(key=lambda f: f.name)
        return files, skipped

    def read(self, file: SourceFile) -> bytes:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip.read(file.locator)

    def __getstate__(self):  # an open ZipFile cannot travel to worker processes
        return {"path": self.path, "_zip": None}


class TarSource:
    """Tar archives (plain, .gz, .bz2, .xz) are streams: the main process reads them in order."""

    kind = "tar"

    def __init__(self, path: Path):
        self.path = path

    def scan(self) -> tuple[list[SourceFile], list[Skipped]]:
        files, skipped = [], []
        for member, error in self._members():
            if error:
                skipped.append(Skipped(self.path.name, "archive truncated or corrupt", error))
                break
            if member.isdir():
                continue
            if member.issym() or member.islnk():
                skipped.append(Skipped(member.name, "link inside archive", member.linkname))
            elif not member.isreg():
                skipped.append(Skipped(member.name, "not a regular file"))
            elif is_litter(member.name):
                skipped.append(Skipped(member.name, "os litter"))
            else:
                files.append(SourceFile(member.name, member.name, member.size, int(member.mtime)))
        # archive order, not name order: tar members can only be read as a stream
        return files, skipped

    def iter_bytes(self, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (member name, bytes) for the wanted members, in archive order."""
        try:
            with tarfile.open(self.path, "r:*") as archive:
                for member in archive:
                    if member.name in wanted and member.isreg():
                        handle = archive.extractfile(member)
                        yield member.name, handle.read() if handle else b""
        except (tarfile.TarError, OSError, EOFError):
            return  # members not yielded are reported unreadable by the caller

    def _members(self) -> Iterator[tuple[tarfile.TarInfo | None, str]]:
        try:
            with tarfile.open(self.path, "r:*") as archive:
                for member in archive:
                    yield member, ""
        except tarfile.ReadError as exc:
            if "empty" in str(exc):
                return
            yield None, str(exc)
        except (tarfile.TarError, OSError, EOFError) as exc:
            yield None, str(exc) or type(exc).__name__


def open_source(path: Path) -> FolderSource | ZipSource | TarSource:
    if path.is_dir():
        return FolderSource(path)
    kind = archive_kind(path)
    if kind == "zip":
        return ZipSource(path)
    if kind == "tar":
        return TarSource(path)
    hint = "Point prepare at a folder of images, a .zip, a .tar(.gz), or a dataset name."
    if not path.is_file():
        raise SourceError(f"{path} is not a file or a folder (a device, pipe or socket). {hint}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise SourceError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    if not head:
        raise SourceError(f"{path} is empty (0 bytes): a download or a copy that did not finish? {hint}")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise SourceError(f"{path} starts like a zip archive but is damaged or cut short (its index at the end is "
                          "missing): download or copy it again.")
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")):
        raise SourceError(f"{path} is compressed but holds no readable tar archive (damaged, cut short, or a single "
                          f"compressed file): download or copy it again, or decompress it yourself. {hint}")
    raise SourceError(f"{path} is a single file that is not a zip or tar archive. {hint}")


def label_root(names: list[str]) -> str:
    """The folder that class folders live in: "" for folders, or an archive's single top folder(s).

    Archives usually wrap everything in one folder ("photos/cats/1.jpg"); class folders are
    the ones below it.
    """
    prefix = ""
    while names:
        first = {n[len(prefix):].split("/", 1)[0] for n in names}
        deeper = all(n[len(prefix):].count("/") >= 2 for n in names)
        if len(first) != 1 or not deeper:
            break
        prefix += first.pop() + "/"
    return prefix


def _link_target(path: str) -> str:
    try:
        return f"points to {os.readlink(path)}"
    except OSError:
        return ""

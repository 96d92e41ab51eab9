"""The on-disk memo of model calls, and the content-addressed store of the crops they were shown.

Entries are JSON (diskcache's JSONDisk), never pickles, so a memo from an untrusted source cannot run code;
each carries a checksum of its content, and a damaged entry is dropped and recomputed."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
import zlib
from pathlib import Path

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW

from .errors import BadOption
from .images import sha256_hex

FORMAT = 1


class SafeJSONDisk(diskcache.JSONDisk):
    """JSONDisk that refuses what only a tampered database holds: pickled keys or values (diskcache would
    unpickle them, running code) and value files outside the memo."""

    def get(self, key, raw):
        if not raw:
            raise ValueError("refusing a pickled key in the memo")
        return super().get(key, raw)

    def fetch(self, mode, filename, value, read):
        if mode not in (MODE_RAW, MODE_BINARY) or (filename and (".." in filename or os.path.isabs(filename))):
            raise ValueError("refusing a memo entry that is not plain JSON")
        return super().fetch(mode, filename, value, read)


NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "ceph", "glusterfs", "lustre",
                       "afs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs")


def network_filesystem(directory: Path, mounts: str | None = None) -> tuple[str, str] | None:
    """(type, mount point) when the folder is on a network file system, whose locks SQLite cannot trust; from
    /proc/mounts (or the text given), None where it cannot be read."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    path = str(Path(directory).resolve())
    best = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[1])):
            best = (fields[2], point)
    return best if best and best[0] in NETWORK_FILESYSTEMS else None


class Memo:
    def __init__(self, directory: Path, size_limit_mb: int = 2048):
        self.directory = Path(directory)
        remote = network_filesystem(self.directory)
        if remote:
            raise BadOption(f"the call memo is an SQLite database and cannot live on a network file system ({remote[0]} "
                            f"at {remote[1]}): set MOSAIC_CACHE_DIR to a folder on this machine's disk")
        self.size_limit = size_limit_mb * 1024 * 1024
        try:
            self._cache = self._open()
        except sqlite3.DatabaseError:
            damaged = self.directory / f"calls.damaged-{int(time.time())}"
            (self.directory / "calls").rename(damaged)
            print(f"mosaic: the memo database was damaged; moved it to {damaged} and started a new one", file=sys.stderr)
            self._cache = self._open()

    def _open(self) -> diskcache.Cache:
        return diskcache.Cache(
            str(self.directory / "calls"),
            disk=SafeJSONDisk,
            size_limit=self.size_limit,
            eviction_policy="least-recently-used",
            timeout=60,  # SQLite busy timeout: two runs sharing the memo wait instead of failing
        )

    def get(self, key: str) -> dict | None:
        try:
            entry = self._cache.get(key, default=None, retry=True)
        except (ValueError, zlib.error, json.JSONDecodeError, UnicodeDecodeError, OSError):
            entry = False  # unreadable: damaged or tampered
        if entry is None:
            return None
        if not _is_sound(entry):
            self._cache.delete(key, retry=True)
            return None
        return entry

    def put(self, key: str, content: str, usage: dict[str, int] | None = None) -> None:
        entry = {"format": FORMAT, "content": content, "usage": usage or {}, "check": sha256_hex(content.encode())}
        self._cache.set(key, entry, retry=True)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._cache), "bytes": self._cache.volume(), "limit": self.size_limit}

    def clear(self) -> int:
        return self._cache.clear(retry=True)

    def prune(self) -> dict[str, int]:
        """Drop tampered, unreadable or damaged entries, then evict least recently used ones down to the limit."""
        tampered = self._cache._sql("DELETE FROM Cache WHERE raw = 0 OR mode NOT IN (?, ?)", (MODE_RAW, MODE_BINARY)).rowcount
        damaged = 0
        for key in list(self._cache.iterkeys()):
            if self.get(key) is None:
                damaged += 1
        return {"damaged": tampered + damaged, "evicted": self._cache.cull(retry=True)}

    def close(self) -> None:
        self._cache.close()


def _is_sound(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("format") == FORMAT
        and isinstance(entry.get("content"), str)
        and entry.get("check") == sha256_hex(entry["content"].encode())
    )


def write_atomically(target: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part: written beside it, then renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a report is shared as the user's other files are
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


def _read_umask() -> int:
    mask = os.umask(0o022)  # reading it means setting it: done once, at import, before any thread writes
    os.umask(mask)
    return mask


UMASK = _read_umask()


class BlobStore:
    """Image bytes by sha256, written atomically, so tasks pass names instead of pixels."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, sha: str) -> Path:
        return self.directory / sha[:2] / f"{sha}.img"  # JPEG or PNG bytes

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        target = self.path(sha)
        if not target.exists():
            write_atomically(target, data)
        return sha

    def prune(self, max_age_days: float) -> int:
        """Remove crops and kept plans not written or read for max_age_days (a rerun after that re-cuts them)."""
        cutoff, removed = time.time() - max_age_days * 86400, 0
        for path in self.crops() + list((self.directory / "plans").glob("*.json")):
            if max(path.stat().st_atime, path.stat().st_mtime) < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def crops(self) -> list[Path]:
        return list(self.directory.glob("*/*.img"))

    def stats(self) -> dict[str, int]:
        crops, plans = self.crops(), list((self.directory / "plans").glob("*.json"))
        return {"crops": len(crops), "crop_bytes": sum(p.stat().st_size for p in crops), "plans": len(plans)}

    def clear(self) -> int:
        """Remove every crop and kept plan; returns how many files."""
        files = self.crops() + list((self.directory / "plans").glob("*.json"))
        for path in files:
            path.unlink(missing_ok=True)
        return len(files)

    def put_plan(self, key: str, text: str) -> None:
        """A prepared plan by the key of its inputs: a rerun of the same image and settings cuts nothing."""
        write_atomically(self.directory / "plans" / f"{key}.json", text.encode())

    def get_plan(self, key: str) -> str | None:
        try:
            return (self.directory / "plans" / f"{key}.json").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def get(self, sha: str) -> bytes:
        data = self.path(sha).read_bytes()
        if sha256_hex(data) != sha:
            raise OSError(f"image blob {sha[:12]} is damaged")
        return data

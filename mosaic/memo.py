"""The on-disk memo of model calls, and the content-addressed store of the crops they were shown.

Entries are JSON (diskcache's JSONDisk), never pickles, so a memo from an untrusted source cannot run code;
each carries a checksum of its content, and a damaged entry is dropped and recomputed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import diskcache

from .images import sha256_hex

FORMAT = 1


class Memo:
    def __init__(self, directory: Path, size_limit_mb: int = 2048):
        self.directory = Path(directory)
        self._cache = diskcache.Cache(
            str(self.directory / "calls"),
            disk=diskcache.JSONDisk,
            size_limit=size_limit_mb * 1024 * 1024,
            eviction_policy="least-recently-used",
            timeout=60,  # SQLite busy timeout: two runs sharing the memo wait instead of failing
        )

    def get(self, key: str) -> dict | None:
        entry = self._cache.get(key, default=None, retry=True)
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
        return {"entries": len(self._cache), "bytes": self._cache.volume()}

    def clear(self) -> int:
        return self._cache.clear(retry=True)

    def close(self) -> None:
        self._cache.close()


def _is_sound(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("format") == FORMAT
        and isinstance(entry.get("content"), str)
        and entry.get("check") == sha256_hex(entry["content"].encode())
    )


class BlobStore:
    """Image bytes by sha256, written atomically, so tasks pass names instead of pixels."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, sha: str) -> Path:
        return self.directory / sha[:2] / f"{sha}.png"

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        target = self.path(sha)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return sha

    def get(self, sha: str) -> bytes:
        data = self.path(sha).read_bytes()
        if sha256_hex(data) != sha:
            raise OSError(f"image blob {sha[:12]} is damaged")
        return data

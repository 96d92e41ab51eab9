"""Files a user may drop into an inbox: small good photos, and the five kinds that cannot be reviewed."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def good_photo(path: Path, size: tuple[int, int] = (320, 240), seed: int = 0) -> Path:
    """A small textured photo with a word on it (quick to review with the offline reader)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(40, 120, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    ImageDraw.Draw(image).rectangle((size[0] // 10, size[1] // 10, size[0] // 2, size[1] // 3), fill=(230, 230, 210))
    image.save(path)
    return path


def bomb_png(path: Path, width: int = 20_000, height: int = 10_000) -> Path:
    """A few bytes of PNG whose header claims width×height pixels (200 MP by default): a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """The five files that cannot be reviewed, by kind: truncated, empty, text, tiny, bomb."""
    whole = good_photo(folder / "whole.tmp.png", (640, 480), seed=99).read_bytes()
    (folder / "whole.tmp.png").unlink()
    files = {"truncated": folder / "truncated.png", "empty": folder / "empty.jpg", "text": folder / "notes.jpg",
             "tiny": folder / "tiny.png", "bomb": folder / "bomb.png"}
    files["truncated"].write_bytes(whole[: len(whole) // 3])
    files["empty"].write_bytes(b"")
    files["text"].write_text("shopping list: milk, eggs\n")
    good_photo(files["tiny"], (20, 20))
    bomb_png(files["bomb"])
    return files

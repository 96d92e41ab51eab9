"""Generated damaged images: every one gets a normalised RGB image or one BadImage line, never another error."""

import io
import random
import struct
import zlib

import pytest
from PIL import Image

from mosaic.errors import BadImage
from mosaic.images import decode_image

FORMATS = ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF"]


def sample(fmt: str) -> bytes:
    img = Image.new("RGB", (96, 64), (30, 120, 200))
    for x in range(0, 96, 8):
        img.paste((250, 200 - x, x), (x, 10, x + 4, 50))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def check(data: bytes) -> str:
    try:
        loaded = decode_image(data, "case")
    except BadImage as e:
        assert "\n" not in str(e) and str(e).startswith("case ")
        return "error"
    assert loaded.image.mode == "RGB" and loaded.image.width >= 1 and loaded.image.height >= 1
    return "image"


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_truncation_and_flipped_bytes(fmt):
    original = sample(fmt)
    rng = random.Random(fmt)
    outcomes = []
    for _ in range(40):
        outcomes.append(check(original[: rng.randrange(0, len(original))]))
    for _ in range(40):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        outcomes.append(check(bytes(data)))
    assert "error" in outcomes  # the mutations really damaged something


def png_with_size(width: int, height: int) -> bytes:
    head = bytearray(sample("PNG"))
    head[16:24] = struct.pack(">II", width, height)
    head[29:33] = struct.pack(">I", zlib.crc32(bytes(head[12:29])))
    return bytes(head)


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (2**31 - 1, 1), (1, 2**31 - 1), (65535, 65535)])
def test_absurd_header_sizes(size):
    assert check(png_with_size(*size)) == "error"


def test_header_larger_than_its_data_is_an_image_or_a_clear_error():
    assert check(png_with_size(96, 64000)) in ("image", "error")


def test_wrong_extension_is_read_by_content(tmp_path):
    from mosaic.images import load_image

    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(sample("PNG"))
    assert load_image(path).size == (96, 64)


def test_avif_is_read_and_heic_is_a_clear_error():
    assert check(sample("AVIF")) == "image"
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200
    with pytest.raises(BadImage, match="HEIC, which this Pillow cannot read: convert it to JPEG or PNG"):
        decode_image(heic, "photo.heic")

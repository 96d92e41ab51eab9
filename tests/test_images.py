"""Odd but valid images get normalised as a viewer shows them; broken ones get one clear line."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mosaic.errors import BadImage
from mosaic.images import decode_image, load_image

from conftest import make_photo


@pytest.mark.parametrize("mode,fmt", [("CMYK", "JPEG"), ("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("1", "PNG"), ("P", "GIF")])
def test_modes_become_rgb(tmp_path, mode, fmt):
    path = make_photo(tmp_path / f"x.{fmt.lower()}", size=(300, 200), mode=mode, fmt=fmt)
    loaded = load_image(path)
    assert loaded.image.mode == "RGB" and loaded.size == (300, 200)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 256 * 64).reshape(64, 256)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    grey = np.asarray(load_image(path).image)[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and 100 < grey.mean() < 155


def test_palette_transparency_is_composited_on_white(tmp_path):
    img = Image.new("P", (50, 50), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    path = tmp_path / "clear.png"
    img.save(path, transparency=0)
    assert load_image(path).image.getpixel((10, 10)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (400, 200), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (200, 400)


def test_animated_takes_first_frame_and_says_so(tmp_path):
    frames = [Image.new("RGB", (120, 80), c) for c in ("red", "blue", "green")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    loaded = load_image(path)
    assert loaded.image.getpixel((5, 5))[0] > 200
    assert "first frame" in loaded.notes[0] and "3 frames" in loaded.notes[0]


def _png_bytes(size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("just some text, not pixels"), "not an image"),
    (lambda p: p.write_bytes(_png_bytes((500, 500))[:300]), "truncated or damaged"),
    (lambda p: p.write_bytes(b"\x00\x00\x00\x1cftypheic" + b"\x00" * 64), "HEIC"),
])
def test_bad_files_have_one_line_errors(tmp_path, make, message):
    path = tmp_path / "input.jpg"
    make(path)
    with pytest.raises(BadImage, match=message) as failure:
        load_image(path)
    assert "\n" not in str(failure.value)


def test_decompression_bomb_names_the_limit_and_the_way_out():
    # a PNG header claiming 30000x30000 pixels
    head = bytearray(_png_bytes((1, 1)))
    head[16:24] = struct.pack(">II", 30000, 30000)
    head[29:33] = struct.pack(">I", zlib.crc32(bytes(head[12:29])))
    with pytest.raises(BadImage, match=r"900 MP, over Pillow's decompression-bomb limit .* MOSAIC_MAX_IMAGE_MP="):
        decode_image(bytes(head), "huge.png")

"""The base64-PNG form of images: a column `image` of base64 PNGs, one per image.

Encoding is written directly (it is a third of Pillow's time for a small image); decoding
uses Pillow and checks the size and mode against the model's image shape before reading
any pixel data. A PNG of another shape or mode is refused naming both ("this model takes
3x32x32 (RGB) images; got 1x28x28 (grey)").
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct
import zlib

import numpy as np
import pandas as pd

from latent_models.models.config import MNIST_SHAPE

IMAGE_COLUMN = "image"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The longest base64 PNG accepted for one image, in characters: room for any encoder's
# output of an uncompressed 8-bit image (with ancillary chunks), far below what would hold
# a worker. A longer string is refused before it is decoded.
MIN_PNG_CHARS = 64 * 1024
# Pillow mode of each accepted channel count, and how PNG modes read to a user.
MODES = {1: ("L", "8-bit grayscale"), 3: ("RGB", "8-bit RGB")}
_PIL_MODES = {
    "1": "1-bit black and white",
    "I;16": "16-bit grayscale",
    "I;16B": "16-bit grayscale",
    "I": "32-bit integer grayscale",
    "F": "32-bit float grayscale",
    "L": "8-bit grayscale",
    "LA": "grayscale with alpha (2 channels)",
    "P": "palette (indexed colour)",
    "RGB": "RGB (3 channels)",
    "RGBA": "RGBA (4 channels)",
}


class BadImage(ValueError):
    """An image a caller sent that cannot be read as the model's images; the message says why."""


def describe(image_shape: tuple[int, int, int]) -> str:
    """How a user would name PNGs of this shape, e.g. '8-bit grayscale 28x28 PNGs'."""
    channels, height, width = image_shape
    return f"{MODES[channels][1]} {width}x{height} PNGs"


# What a number of channels is called, in the words of `shape_words`.
CHANNEL_WORDS = {1: "grey", 2: "grey with alpha", 3: "RGB", 4: "RGBA"}
# PNG colour types (the IHDR header's byte 25): (channels, words).
_PNG_COLOUR_TYPES = {0: (1, "grey"), 2: (3, "RGB"), 3: (1, "palette"), 4: (2, "grey with alpha"), 6: (4, "RGBA")}


def shape_words(channels: int, height: int, width: int, kind: str | None = None) -> str:
    """An image shape as a user reads it: '3x32x32 (RGB)', '1x28x28 (grey)'."""
    kind = kind or CHANNEL_WORDS.get(channels)
    return f"{channels}x{height}x{width}" + (f" ({kind})" if kind else "")


def takes(image_shape: tuple[int, int, int], got: str | None = None) -> str:
    """'this model takes 3x32x32 (RGB) images; got 1x28x28 (grey)': ends every message that
    refuses images of the wrong shape or mode, naming both."""
    text = f"this model takes {shape_words(*image_shape)} images"
    return f"{text}; got {got}" if got else text


def png_shape_words(raw: bytes) -> str | None:
    """The shape and mode a PNG's header (IHDR) declares, in `shape_words`' words; None if unreadable."""
    if len(raw) < 26 or raw[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", raw[16:24])
    depth, colour_type = raw[24], raw[25]
    if colour_type not in _PNG_COLOUR_TYPES:
        return None
    channels, kind = _PNG_COLOUR_TYPES[colour_type]
    if depth != 8 and colour_type != 3:
        kind = f"{depth}-bit {kind}"
    return shape_words(channels, height, width, kind)


def decode_png(item, index: int = 0, image_shape: tuple[int, int, int] = MNIST_SHAPE) -> np.ndarray:
    """One base64 PNG (str, optionally a `data:` URL) or raw PNG bytes -> (H, W) or (H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = image_shape
    mode, kind = MODES[channels]
    where = f"image {index}"
    if isinstance(item, (str, bytes, bytearray)) and len(item) > max_png_chars(image_shape):
        raise BadImage(
            f"{where}: {len(item)} characters is too long for a {width}x{height} PNG "
            f"(at most {max_png_chars(image_shape)})"
        )
    if isinstance(item, str):
        text = item.split(",", 1)[1] if item.startswith("data:") else item
        try:
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadImage(f"{where}: not valid base64 ({exc})") from None
    elif isinstance(item, (bytes, bytearray)):
        raw = bytes(item)
    else:
        got = "nothing" if item is None or (isinstance(item, float) and math.isnan(item)) else type(item).__name__
        raise BadImage(f"{where}: expected a base64 PNG string, got {got}")
    if not raw.startswith(PNG_SIGNATURE):
        raise BadImage(f"{where}: not a PNG ({_sniff(raw)}); send {describe(image_shape)}")
    # The size is in the header (IHDR, the first chunk): checked before Pillow reads anything,
    # so a header claiming 30000x30000 is refused here, not as a decompression bomb.
    if len(raw) < 24 or raw[12:16] != b"IHDR":
        raise BadImage(f"{where}: unreadable PNG (no IHDR header)")
    claimed = struct.unpack(">II", raw[16:24])
    refusal = f" — {takes(image_shape, png_shape_words(raw))}"
    if claimed != (width, height):
        raise BadImage(f"{where}: PNG is {claimed[0]}x{claimed[1]}; expected {width}x{height}{refusal}")
    try:
        image = Image.open(io.BytesIO(raw), formats=["PNG"])
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"{where}: unreadable PNG ({exc})") from None
    with image:
        if image.size != (width, height):
            raise BadImage(f"{where}: PNG is {image.size[0]}x{image.size[1]}; expected {width}x{height}{refusal}")
        if image.mode != mode:
            got = _PIL_MODES.get(image.mode, f"mode {image.mode}")
            raise BadImage(f"{where}: PNG is {got}; expected {kind}{refusal}")
        try:
            image.load()
        except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, MemoryError) as exc:
            raise BadImage(f"{where}: unreadable PNG ({exc})") from None
        return np.asarray(image, dtype=np.uint8)


def max_png_chars(image_shape: tuple[int, int, int]) -> int:
    """The longest base64 PNG accepted for an image of this shape (see MIN_PNG_CHARS)."""
    return max(MIN_PNG_CHARS, 4 * math.prod(image_shape))


def _sniff(raw: bytes) -> str:
    if not raw:
        return "empty"
    for magic, name in (
        (b"\xff\xd8\xff", "JPEG"),
        (b"GIF8", "GIF"),
        (b"BM", "BMP"),
        (b"RIFF", "RIFF/WebP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
    ):
        if raw.startswith(magic):
            return f"looks like {name}"
    return f"{len(raw)} bytes starting {raw[:8]!r}"


def encode_png(pixels: np.ndarray) -> str:
    """A (H, W) or (H, W, 3) uint8 array -> base64 of an 8-bit grayscale or RGB PNG.

    Written directly (filter 0 on every row, zlib level 1): a third of the time Pillow takes
    for a 28x28 image, and any PNG reader decodes it.
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = np.zeros((height, width * channels + 1), dtype=np.uint8)
    rows[:, 1:] = pixels.reshape(height, width * channels)
    colour_type = {1: 0, 3: 2}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    png = (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + _chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode("ascii")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def to_pixels(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W) or (N, H, W, 3) uint8, as PNGs hold them."""
    pixels = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1)


def images_to_png_frame(images: np.ndarray, image_shape: tuple[int, int, int] = MNIST_SHAPE) -> pd.DataFrame:
    """Floats in [0, 1] of `image_shape` -> the `image` column a client sends (for tests, benchmarks, docs)."""
    pixels = to_pixels(np.asarray(images, np.float32).reshape(-1, *image_shape))
    return pd.DataFrame({IMAGE_COLUMN: [encode_png(p) for p in pixels]})


def png_frame_to_images(frame, image_shape: tuple[int, int, int] = MNIST_SHAPE) -> np.ndarray:
    """The inverse: a DataFrame / records / list of base64 PNGs -> (N, H, W) (or (N, H, W, 3))
    float32 in [0, 1]."""
    if isinstance(frame, pd.DataFrame):
        items = frame[IMAGE_COLUMN].tolist()
    else:
        items = [r[IMAGE_COLUMN] if isinstance(r, dict) else r for r in frame]
    return np.stack([decode_png(item, i, image_shape) for i, item in enumerate(items)]).astype(np.float32) / 255.0

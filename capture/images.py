"""Still images from files or bytes, with the pixel count checked from the header before any decoding.

A small file can declare a huge image (a 1.2 MB PNG of 20000x20000 pixels decodes to 1.2 GB), so every
image the app reads from a user goes through here:

    rgb = read_image_rgb("photo.jpg")            # (H, W, 3) uint8 RGB; ImageError names the file
    grey = read_image_grey("face.png")           # (H, W) uint8
    width, height = check_image(path)            # header only: size checked, nothing decoded

Decoding is PIL's, as fastai's (so training and the live path see the same pixels).
"""
from __future__ import annotations

import io
import os

import numpy as np

from capture.source import CaptureError

MAX_IMAGE_PIXELS = 50_000_000  # 50 megapixels: more than any webcam or most phone photos; RGB decode <= 150 MB
MIN_IMAGE_SIDE_PX = 2


class ImageError(CaptureError):
    """An image that cannot or should not be decoded; the message names it and says what to do."""


def _open(source: str | os.PathLike | bytes, name: str):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except Image.DecompressionBombError as e:  # PIL's own bound, hit while reading the header
        raise ImageError(f"{name} declares too many pixels to decode safely; resize it (at most "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels) and try again") from e
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ImageError(f"{name} is not a readable image (corrupt, truncated or not an image); replace or "
                         "remove it") from e


def _checked_size(im, name: str, max_pixels: int) -> tuple[int, int]:
    width, height = im.size
    if width * height > max_pixels:
        raise ImageError(f"{name} declares {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); images "
                         f"above {max_pixels / 1e6:.0f} megapixels are refused: resize it and try again")
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        raise ImageError(f"{name} is too small to use ({width}x{height} pixels)")
    return width, height


def check_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_IMAGE_PIXELS,
                name: str | None = None) -> tuple[int, int]:
    """(width, height) read from the header; ImageError if unreadable, too small or over `max_pixels`."""
    name = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "the image")
    with _open(source, name) as im:
        return _checked_size(im, name, max_pixels)


def _decode(source: str | os.PathLike | bytes, mode: str, max_pixels: int, name: str | None) -> np.ndarray:
    name = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "the image")
    with _open(source, name) as im:
        _checked_size(im, name, max_pixels)
        try:
            return np.ascontiguousarray(np.asarray(im.convert(mode)))
        except (OSError, ValueError) as e:  # truncated data shows only when the pixels are decoded
            raise ImageError(f"{name} is not a readable image (corrupt or truncated); replace or remove it") from e


def read_image_rgb(source: str | os.PathLike | bytes, max_pixels: int = MAX_IMAGE_PIXELS,
                   name: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a file path or encoded bytes; size checked before decoding."""
    return _decode(source, "RGB", max_pixels, name)


def read_image_grey(source: str | os.PathLike | bytes, max_pixels: int = MAX_IMAGE_PIXELS,
                    name: str | None = None) -> np.ndarray:
    """(H, W) uint8 grey (ITU-R 601 luma, as OpenCV's) from a file path or encoded bytes."""
    return _decode(source, "L", max_pixels, name)


__all__ = ["ImageError", "MAX_IMAGE_PIXELS", "check_image", "read_image_grey", "read_image_rgb"]

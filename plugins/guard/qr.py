"""QR codes in images, decoded locally with zxing-cpp (no network): the ad poster's payload."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("qunbot.plugin.guard")

MAX_PIXELS = 40_000_000
"""Larger images are refused before decoding (a decompression bomb costs memory, not a QR code)."""
_MAX_SIDE = 2000
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}


def decode_qr(path: Path) -> str | None:
    """The text of the first QR code in the image at `path`, or None (not an image, no QR, unreadable)."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                log.warning("guard: image %s is too large to scan (%dx%d)", path.name, image.width, image.height)
                return None
            image.draft("L", (_MAX_SIDE, _MAX_SIDE))
            gray = image.convert("L")
            if max(gray.size) > _MAX_SIDE:
                gray.thumbnail((_MAX_SIDE, _MAX_SIDE))
            codes = zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        log.info("guard: could not read image %s: %s", path.name, err)
        return None
    for code in codes:
        if code.text:
            return code.text
    return None

"""Small images for reports: image thumbnails and PNG data URIs without a matplotlib figure."""

from __future__ import annotations

import base64
import io

import numpy as np


def image_data_uri(image: np.ndarray, *, scale: int = 2) -> str:
    """An H×W[×C] image in [0, 1] as a ``data:image/png;base64,...`` thumbnail (upscaled)."""
    from PIL import Image

    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    arr = np.clip(arr, 0.0, 1.0)
    pixels = (arr * 255).round().astype(np.uint8)
    img = Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

"""PNG/JPEG encoding and decoding for :class:`petastorm.codecs.CompressedImageCodec`.

OpenCV (``cv2``) is used when installed: its decoder releases the GIL, so reader threads scale. Without
it, Pillow does the same job. Stored bytes keep OpenCV's convention for 3-channel images (BGR channel
order in the encoded file, RGB in memory), which is what the original library writes.
"""
from __future__ import annotations

import functools
from io import BytesIO
from typing import Any

import numpy as np

from petastorm.errors import PetastormSchemaError

__all__ = ["encode_image", "decode_image", "decode_image_cells", "opencv"]


@functools.lru_cache(maxsize=1)
def opencv() -> Any:
    """The ``cv2`` module, or None when OpenCV is not installed (imported lazily, once)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("CompressedImageCodec needs OpenCV or Pillow: pip install 'petastorm[opencv]' "
                          "(opencv-python-headless) or pillow") from None
    return Image


def encode_image(value: np.ndarray, ext: str, quality: int) -> bytes:
    """Encode an RGB (or grey, or 4-channel) image as PNG/JPEG bytes.

    Parameters
    ----------
    value : numpy.ndarray, shape (H, W) or (H, W, C)
    ext : {'.png', '.jpeg'}
    quality : int, JPEG quality 0..100
    """
    cv2 = opencv()
    if cv2 is not None:
        img = cv2.cvtColor(value, cv2.COLOR_RGB2BGR) if value.ndim == 3 and value.shape[2] == 3 else value
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)] if ext == ".jpeg" else []
        ok, contents = cv2.imencode(ext, img, params)
        if not ok:
            raise PetastormSchemaError(f"OpenCV could not encode an image of {value.dtype} {value.shape} as {ext}")
        return contents.tobytes()
    image = _pillow()
    # OpenCV stores a 3-channel array as RGB after our RGB->BGR swap, i.e. the file holds the true RGB:
    # Pillow writes RGB as is. A 4-channel array goes to OpenCV unswapped (read as BGRA): swap 0 and 2.
    img = value[..., [2, 1, 0, 3]] if value.ndim == 3 and value.shape[2] == 4 else value
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    buf = BytesIO()
    fmt = "PNG" if ext == ".png" else "JPEG"
    kwargs = {"quality": int(quality)} if fmt == "JPEG" else {}
    image.fromarray(np.ascontiguousarray(img)).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def decode_image(value: Any) -> np.ndarray:
    """Decode PNG/JPEG bytes into an RGB (or grey) array."""
    cv2 = opencv()
    buf = np.frombuffer(value, dtype=np.uint8)
    if cv2 is not None:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise PetastormSchemaError(f"cannot decode image bytes (length {len(buf)})")
        if img.ndim == 3 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img
    image = _pillow()
    try:
        img = np.asarray(image.open(BytesIO(buf.tobytes())))
    except Exception as e:
        raise PetastormSchemaError(f"cannot decode image bytes (length {len(buf)}): {e}") from e
    if img.ndim == 3 and img.shape[2] == 4:
        img = np.ascontiguousarray(img[..., [2, 1, 0, 3]])
    return img


def decode_image_cells(field: Any, offsets: np.ndarray, data: np.ndarray, column: Any) -> np.ndarray:
    """Decode every cell of a binary column of images.

    Returns
    -------
    numpy.ndarray
        ``(rows,) + shape`` when the field's shape is fixed and there are no nulls, else an object array.
    """
    n = len(offsets) - 1
    shape = tuple(field.shape)
    fixed = all(d is not None for d in shape) and column.null_count == 0
    cv2 = opencv()
    if fixed:
        from petastorm.batch_memory import empty_batch

        out = empty_batch((n,) + shape, np.dtype(field.numpy_dtype))
        rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None) if cv2 is not None else None
        if rgb_flag is not None and len(shape) == 3 and shape[2] == 3 and out.dtype == np.uint8:
            flags = rgb_flag | cv2.IMREAD_IGNORE_ORIENTATION  # the decoder writes RGB itself
            for i in range(n):
                img = cv2.imdecode(data[offsets[i]:offsets[i + 1]], flags)
                if img is None or img.shape != shape or img.dtype != out.dtype:
                    _raise_bad(field, i, img)
                out[i] = img
            return out
        for i in range(n):
            cell = data[offsets[i]:offsets[i + 1]]
            if cv2 is not None and len(shape) == 3 and shape[2] == 3:
                img = cv2.imdecode(cell, cv2.IMREAD_UNCHANGED)
                if img is None or img.shape != shape or img.dtype != out.dtype:
                    _raise_bad(field, i, img)
                cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=out[i])
            else:
                img = _decode_cell(field, i, cell)
                if img.shape != shape and img.ndim == len(shape) - 1 and shape[-1] == 1:
                    img = img[..., None]
                if img.shape != shape or img.dtype != out.dtype:
                    _raise_bad(field, i, img)
                out[i] = img
        return out
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    result = np.empty(n, dtype=object)
    for i in range(n):
        result[i] = _decode_cell(field, i, data[offsets[i]:offsets[i + 1]]) if valid[i] else None
    return result


def _decode_cell(field: Any, i: int, cell: np.ndarray) -> np.ndarray:
    try:
        return decode_image(cell)
    except PetastormSchemaError as e:
        from petastorm.codecs import decode_error

        raise decode_error(field, i, str(e)) from e


def _raise_bad(field: Any, i: int, img: Any) -> None:
    from petastorm.codecs import decode_error

    got = "undecodable bytes" if img is None else f"{img.dtype} of shape {img.shape}"
    raise decode_error(field, i, f"expected an image of {np.dtype(field.numpy_dtype)} of shape {tuple(field.shape)}, "
                                 f"got {got}")

"""write_dataset with images a PNG/JPEG file cannot hold as is.

Before the fix these rows were written (OpenCV falls back to 8 bits, or drops the 4th channel of a JPEG) and
the dataset could not be read back: the reader refused each row for its dtype/shape. Now the write fails up
front naming the row and the field, and nothing is published.
"""
from __future__ import annotations

import numpy as np
import pytest

from petastorm import make_reader
from petastorm.codecs import CompressedImageCodec
from petastorm.errors import PetastormSchemaError
from petastorm.etl.writer import write_dataset
from petastorm.unischema import Unischema, UnischemaField

REFUSED = {
    # 0.12.1 (recorded): ValueError "Supported dimensions are (H, W) or (H, W, 3). Got (4, 4, 4)"
    "jpeg_4_channels": ("jpeg", np.uint8, (4, 4, 4), "JPEG stores 1 or 3 channels"),
    # 0.12.1 (recorded): written as 8-bit JPEG, read back as uint8 255s (values silently changed)
    "jpeg_uint16": ("jpeg", np.uint16, (4, 4), "JPEG stores uint8 pixels, got uint16"),
    # 0.12.1 (recorded): cv2.error "img data type = bool is not supported"
    "png_bool": ("png", np.bool_, (4, 4), "PNG stores uint8 or uint16 pixels, got bool"),
    "png_float32": ("png", np.float32, (4, 4, 3), "PNG stores uint8 or uint16 pixels, got float32"),
    "png_int16": ("png", np.int16, (4, 4), "PNG stores uint8 or uint16 pixels, got int16"),
    # 0.12.1 (recorded): cv2.error "!_img.empty() in function 'imencode'"
    "png_no_pixel": ("png", np.uint8, (0, 4, 3), "needs at least one pixel"),
}


def _schema(fmt, dtype, shape):
    return Unischema("Img", [UnischemaField("id", np.int64, (), None, False),
                             UnischemaField("img", dtype, (None,) * len(shape), CompressedImageCodec(fmt), False)])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_an_image_the_format_cannot_hold_is_refused_naming_row_and_field(tmp_path, case):
    fmt, dtype, shape, message = REFUSED[case]
    rows = [{"id": i, "img": np.ones(shape, dtype)} for i in range(3)]  # the field's own dtype: only the format
    target = tmp_path / "ds"
    with pytest.raises(PetastormSchemaError, match=message) as info:
        write_dataset(str(target), _schema(fmt, dtype, shape), rows, workers_count=1, progress=False)
    assert "row 0" in str(info.value) and "'img'" in str(info.value)
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt, dtype, channels", [
    ("png", np.uint8, None), ("png", np.uint8, 1), ("png", np.uint8, 3), ("png", np.uint8, 4),
    ("png", np.uint16, None), ("png", np.uint16, 3), ("png", np.uint16, 4),
    ("jpeg", np.uint8, None), ("jpeg", np.uint8, 1), ("jpeg", np.uint8, 3)])
def test_every_image_the_format_holds_reads_back_with_its_dtype_and_shape(tmp_path, fmt, dtype, channels):
    shape = (6, 5) if channels is None else (6, 5, channels)
    value = np.full(shape, 200 if dtype == np.uint8 else 60000, dtype)
    schema = Unischema("Img", [UnischemaField("img", dtype, shape, CompressedImageCodec(fmt), False)])
    write_dataset(str(tmp_path / "ds"), schema, [{"img": value}] * 2, workers_count=1, progress=False)
    with make_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        out = [row.img for row in reader]
    assert len(out) == 2
    for img in out:
        assert img.dtype == dtype and img.shape == shape
        if fmt == "png":  # lossless
            np.testing.assert_array_equal(img, value)
        else:             # a flat JPEG is close
            assert np.abs(img.astype(int) - value.astype(int)).max() <= 2


@pytest.mark.parametrize("quality", ["high", [90], True, 50.5])
def test_a_jpeg_quality_that_is_not_a_number_is_refused_when_the_codec_is_made(quality):
    # before: accepted, then every row failed in int() (or, for 50.5, when writing the metadata) with a message
    # naming neither the codec nor quality; 0.12.1 (recorded) fails in cv2.imencode for 'high' and 50.5
    with pytest.raises(PetastormSchemaError, match="CompressedImageCodec: quality must be an integer"):
        CompressedImageCodec("jpeg", quality=quality)


@pytest.mark.parametrize("quality", [None, 0, 100, np.int64(70)])
def test_jpeg_quality_none_or_a_number_writes_a_readable_image(tmp_path, quality):
    # 0.12.1 (recorded) encodes with quality=None (OpenCV's default)
    value = np.full((8, 8, 3), 100, np.uint8)
    schema = Unischema("Img", [UnischemaField("img", np.uint8, (8, 8, 3), CompressedImageCodec("jpeg", quality),
                                              False)])
    write_dataset(str(tmp_path / "ds"), schema, [{"img": value}], workers_count=1, progress=False)
    with make_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        (img,) = [row.img for row in reader]
    assert img.shape == (8, 8, 3) and np.abs(img.astype(int) - 100).max() <= 8

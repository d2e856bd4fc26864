"""Data preparation at the decoder's pace: reduced-size JPEG decoding stays close to a full decode, and shards
written by separate tasks (recorded with ``ShardWriter.add_written``) read back exactly. No Ray, tiny data."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from workers.data import open_sharded
from workers.data.shards import ShardWriter, shard_name, write_shard
from workers.data.sources import decode_image
from workers.data.synthetic import render_lesion


def _jpeg(k: int, size=(450, 600)) -> bytes:
    """A 600x450 lesion-like JPEG (as benchmarks/make_isic2019.py writes them)."""
    small = render_lesion(np.random.default_rng([5, k]), (size[0] // 4, size[1] // 4), k % 9)
    buf = io.BytesIO()
    Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _full_decode(raw: bytes, size: tuple[int, int]) -> np.ndarray:
    with Image.open(io.BytesIO(raw)) as img:
        return np.asarray(img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR))


@pytest.mark.parametrize("size", [(224, 224), (64, 64), (16, 16), (120, 200)])
def test_reduced_size_decoding_is_close_to_a_full_decode(size):
    for k in range(4):
        raw = _jpeg(k)
        fast = decode_image("unused.jpg", size, raw=raw)
        full = _full_decode(raw, size)
        assert fast.shape == (*size, 3) and fast.dtype == np.uint8
        diff = np.abs(fast.astype(int) - full.astype(int))
        assert diff.mean() < 2.0, (size, diff.mean())  # about 0.5-1 grey level on these images
        assert np.array_equal(fast, decode_image("unused.jpg", size, raw=raw))  # deterministic


def test_targets_not_smaller_than_the_source_and_other_formats_decode_fully(tmp_path):
    raw = _jpeg(1)
    assert np.array_equal(decode_image("x.jpg", (450, 600), raw=raw), _full_decode(raw, (450, 600)))
    png = io.BytesIO()
    Image.open(io.BytesIO(raw)).save(png, "PNG")
    assert np.array_equal(decode_image("x.png", (32, 32), raw=png.getvalue()), _full_decode(png.getvalue(), (32, 32)))


def test_shards_written_elsewhere_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    train, val = rng.integers(0, 256, (19, 4, 5, 3), dtype=np.uint8), rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    writer = ShardWriter(tmp_path / "d", (4, 5, 3), expected_rows=22, rows_per_shard=8, shuffle_block=4)
    shards = [(shard_name("train", k), write_shard(tmp_path / "d", shard_name("train", k), train[a:a + 8]))
              for k, a in enumerate(range(0, 19, 8))]
    writer.add_written("train", shards, np.arange(19) % 3, [f"t{i}" for i in range(19)])
    writer.append("val", val, np.zeros(3, np.int64), ["v0", "v1", "v2"])
    writer.finish(["a", "b", "c"], {})
    data = open_sharded(tmp_path / "d")
    assert np.array_equal(data.images_train.read_all(), train) and data.y_train.tolist() == (np.arange(19) % 3).tolist()
    assert np.array_equal(data.images_val.read_all(), val) and data.ids_train[-1] == "t18"
    with pytest.raises(ValueError, match="do not match"):  # a short shard in the middle
        ShardWriter(tmp_path / "e", (4, 5, 3), expected_rows=19, rows_per_shard=8, shuffle_block=4).add_written(
            "train", [(shard_name("train", 0), shards[2][1]), (shard_name("train", 1), shards[0][1])],
            np.zeros(11, np.int64), ["x"] * 11)

"""MRC maps and MRCS stacks: voxel size round trip, memory-mapped batch reads, clear errors."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from flexcore.core.errors import InputFileError
from flexcore.core.io import StackReader, StackWriter, read_map, write_map, write_stack


def test_map_round_trip_keeps_values_order_and_voxel_size(tmp_path, rng):
    vol = rng.normal(size=(12, 12, 12)).astype(np.float32)
    vol[1, 2, 3] = 100.0  # an asymmetric marker pins [z, y, x] order
    write_map(tmp_path / "map.mrc", vol, 1.234)
    back, voxel = read_map(tmp_path / "map.mrc")
    np.testing.assert_array_equal(back, vol)
    assert back[1, 2, 3] == 100.0
    assert voxel == pytest.approx(1.234, abs=1e-6)
    with mrcfile.open(tmp_path / "map.mrc") as m:
        assert (int(m.header.nx), int(m.header.nz)) == (12, 12)


def test_non_cubic_map_is_rejected(tmp_path):
    write_map(tmp_path / "slab.mrc", np.zeros((4, 8, 8), np.float32), 1.0)
    with pytest.raises(InputFileError, match=r"slab\.mrc.*cubic 3-D map.*\(4, 8, 8\)"):
        read_map(tmp_path / "slab.mrc")


def test_stack_reader_memory_maps_and_reads_any_batch(tmp_path, rng):
    images = rng.normal(size=(20, 16, 16)).astype(np.float32)
    write_stack(tmp_path / "s.mrcs", images, 2.0)
    reader = StackReader(tmp_path / "s.mrcs")
    assert isinstance(reader.data, np.memmap)
    assert (reader.n, reader.box, reader.pixel_size_A) == (20, 16, 2.0)
    for batch in ([0], [19, 3, 7], [5, 5, 2], np.arange(20)[::-3]):
        np.testing.assert_array_equal(reader.read(batch), images[np.asarray(batch)])
    assert reader.read([3]).dtype == np.float32
    with pytest.raises(InputFileError, match=r"s\.mrcs.*image index 21.*holds 20"):
        reader.read([2, 20])
    reader.close()


def test_stack_writer_fills_slices_and_appears_only_on_success(tmp_path, rng):
    images = rng.normal(size=(6, 8, 8)).astype(np.float32)
    with StackWriter(tmp_path / "w.mrcs", 6, 8, 1.5) as writer:
        writer.write(0, images[:4])
        writer.write(4, images[4:])
    reader = StackReader(tmp_path / "w.mrcs")
    np.testing.assert_array_equal(reader.read(np.arange(6)), images)
    reader.close()
    with pytest.raises(RuntimeError):
        with StackWriter(tmp_path / "bad.mrcs", 6, 8, 1.5) as writer:
            writer.write(0, images[:2])
            raise RuntimeError("stopped half-way")
    assert not (tmp_path / "bad.mrcs").exists()


def test_single_image_file_reads_as_a_stack_of_one(tmp_path, rng):
    image = rng.normal(size=(10, 10)).astype(np.float32)
    with mrcfile.new(tmp_path / "one.mrc") as m:
        m.set_data(image)
    reader = StackReader(tmp_path / "one.mrc")
    assert (reader.n, reader.box) == (1, 10)
    np.testing.assert_array_equal(reader.read([0])[0], image)
    reader.close()


def test_truncated_stack_is_reported(tmp_path):
    write_stack(tmp_path / "full.mrcs", np.ones((10, 16, 16), np.float32), 1.0)
    data = (tmp_path / "full.mrcs").read_bytes()
    (tmp_path / "cut.mrcs").write_bytes(data[: 1024 + 16 * 16 * 4 * 4 + 100])
    with pytest.raises(InputFileError, match=r"cut\.mrcs.*(truncated|no image data)"):
        StackReader(tmp_path / "cut.mrcs")


def test_truncated_map_is_reported(tmp_path):
    write_map(tmp_path / "full.mrc", np.ones((16, 16, 16), np.float32), 1.0)
    data = (tmp_path / "full.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(data[:-4000])
    with pytest.raises(InputFileError, match=r"cut\.mrc.*(truncated|no data|holds)"):
        read_map(tmp_path / "cut.mrc")


def test_tiny_or_missing_files(tmp_path):
    (tmp_path / "tiny.mrc").write_bytes(b"\0" * 100)
    with pytest.raises(InputFileError, match=r"tiny\.mrc.*too small"):
        read_map(tmp_path / "tiny.mrc")
    with pytest.raises(InputFileError, match=r"nothing\.mrcs.*does not exist"):
        StackReader(tmp_path / "nothing.mrcs")

"""Every real-format sample in ../shared/fixtures/formats loads, or is rejected clearly."""

from __future__ import annotations

import numpy as np
import pytest

from flexcore.core.errors import InputFileError
from flexcore.core.io import ImageSource, StackReader, read_map, read_particles, write_cs, write_star

# file → (source_format, particles, has_poses)
LOADABLE = {
    "relion31.star": ("relion31", 5, True),
    "relion31.v2.star": ("relion31", 5, True),
    "relion31.6opticsgroups.star": ("relion31", 139, True),
    "relion5.star": ("relion31", 17, True),
    "empiar_10076_7.star": ("relion30", 7, False),
    "empiar_10076_7.cs": ("cryosparc", 7, False),
    "cryosparc_P12_J24_001_particles.cs": ("cryosparc", 2019, True),
    "cryosparc_J2_particles_exported.cs": ("cryosparc", 22, False),
}


def test_every_metadata_sample_is_covered(formats_dir):
    names = {p.name for p in formats_dir.iterdir() if p.suffix in (".star", ".cs")}
    rejected = {"toy_projections.star"}
    metadata_only = {"FinalRefinement-OriginalParticles-PfCRT.star"}  # its stacks are not shipped
    assert names == set(LOADABLE) | rejected | metadata_only


@pytest.mark.parametrize("name", sorted(LOADABLE))
def test_sample_loads_and_survives_both_writers(formats_dir, tmp_path, name):
    fmt, n, poses = LOADABLE[name]
    table = read_particles(formats_dir / name)
    assert (table.source_format, len(table), table.has_poses) == (fmt, n, poses)
    for out in (tmp_path / "out.star", tmp_path / "out.cs"):
        (write_star if out.suffix == ".star" else write_cs)(table, out)
        back = read_particles(out)
        assert len(back) == n and back.has_poses == poses
        if poses:
            np.testing.assert_allclose(back.rotations, table.rotations, atol=1e-5)
        np.testing.assert_allclose(back.shifts_A, table.shifts_A, atol=1e-4)
        np.testing.assert_allclose(back.defocus_u_A, table.defocus_u_A, rtol=1e-6)
        np.testing.assert_array_equal(back.image_indices, table.image_indices)
        np.testing.assert_array_equal(back.half_set, table.half_set)


def test_relion31_with_its_stack(formats_dir):
    table = read_particles(formats_dir / "relion31.star")
    assert table.pixel_size_A == pytest.approx(2.806) and table.box == 256
    np.testing.assert_allclose(table.shifts_A[0], [0.019324, -0.64686])
    np.testing.assert_array_equal(table.half_set, 0)  # rlnRandomSubset 1 → 0
    assert table.raw_optics is not None and "rlnMicrographOriginalPixelSize" in table.raw_optics
    source = ImageSource(table)
    source.check_all_present()
    images = source.read([4, 0, 2])
    assert images.shape == (3, 256, 256) and images.dtype == np.float32
    direct = StackReader(formats_dir / "relion31.mrcs")
    np.testing.assert_array_equal(images, direct.read([4, 0, 2]))
    direct.close()
    source.close()


def test_relion31_v2_block_order_does_not_matter(formats_dir):
    a = read_particles(formats_dir / "relion31.star")
    b = read_particles(formats_dir / "relion31.v2.star")
    np.testing.assert_array_equal(a.rotations, b.rotations)
    assert a.optics == b.optics


def test_six_optics_groups(formats_dir):
    table = read_particles(formats_dir / "relion31.6opticsgroups.star")
    assert len(table.optics) == 6
    assert [o.name for o in table.optics] == [f"opticsGroup{k}" for k in (5, 3, 2, 1, 4, 6)]
    assert sorted({o.pixel_size_A for o in table.optics}) == [1.24, 1.25]
    assert table.optics[3].spherical_aberration_mm == 2.6
    assert set(np.unique(table.optics_group)) <= set(range(6))
    with pytest.raises(InputFileError, match="different pixel sizes"):
        table.pixel_size_A  # noqa: B018 - the property raises


def test_relion5_aberrations_reach_the_optics_group(formats_dir):
    table = read_particles(formats_dir / "relion5.star")
    g = table.optics[0]
    assert (g.beam_tilt_x_mrad, g.beam_tilt_y_mrad) == (0.043489, 0.014097)
    assert len(g.odd_zernike) == 6 and g.odd_zernike[2] == pytest.approx(-1.79877045848)
    assert len(g.even_zernike) == 9 and g.even_zernike[0] == pytest.approx(45.4677386628)
    assert g.ctf_premultiplied is False and g.voltage_kv == 100.0 and g.image_size == 448
    assert table.raw_optics["rlnMagMat01"][0] == pytest.approx(-7.04404e-04)
    assert set(table.image_paths) == {"toy_images_a.mrcs", "toy_images_b.mrcs"}


def test_refinement_from_the_field_loads_with_relions_default_amplitude_contrast(formats_dir):
    # A RELION 3.0.6 refinement without rlnAmplitudeContrast: RELION assumes Q0 = 0.1.
    table = read_particles(formats_dir / "FinalRefinement-OriginalParticles-PfCRT.star")
    assert table.source_format == "relion30" and table.has_poses
    assert {g.amplitude_contrast for g in table.optics} == {0.1}
    assert table.pixel_size_A > 0


def test_relion30_sample_and_its_cryosparc_twin_agree(formats_dir):
    star = read_particles(formats_dir / "empiar_10076_7.star")
    cs = read_particles(formats_dir / "empiar_10076_7.cs")
    assert star.source_format == "relion30" and star.rotations is None
    assert star.pixel_size_A == pytest.approx(5 / 38168 * 1e4) == pytest.approx(1.31, abs=1e-3)
    assert cs.pixel_size_A == pytest.approx(star.pixel_size_A, rel=1e-6)
    assert star.box == cs.box == 320  # the STAR's box comes from the stack header
    for name in ("defocus_u_A", "defocus_v_A", "defocus_angle_deg", "phase_shift_deg"):
        np.testing.assert_allclose(getattr(star, name), getattr(cs, name), atol=2e-3,
                                   err_msg=name)
    for attr in ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast"):
        assert getattr(star.optics[0], attr) == pytest.approx(getattr(cs.optics[0], attr))
    np.testing.assert_array_equal(star.image_indices, cs.image_indices)
    np.testing.assert_array_equal(star.image_paths, cs.image_paths)


def test_relion30_sample_reads_a_3d_mrc_as_a_stack(formats_dir):
    reader = StackReader(formats_dir / "empiar_10076_7.mrc")
    assert (reader.n, reader.box) == (7, 320)
    source = ImageSource(read_particles(formats_dir / "empiar_10076_7.star"))
    np.testing.assert_array_equal(source.read([6, 1]), reader.read([6, 1]))
    source.close()
    reader.close()


def test_cryosparc_job_output_has_poses_and_shifts(formats_dir):
    path = formats_dir / "cryosparc_P12_J24_001_particles.cs"
    table = read_particles(path)
    raw = np.load(path)
    assert table.pixel_size_A == pytest.approx(2.95) and table.box == 180
    np.testing.assert_allclose(table.shifts_A, raw["alignments3D/shift"] * 2.95, rtol=1e-6)
    np.testing.assert_array_equal(np.bincount(table.half_set), [1010, 1009])
    dets = np.linalg.det(table.rotations)
    np.testing.assert_allclose(dets, 1.0, atol=1e-5)


def test_exported_cryosparc_2d_only(formats_dir):
    table = read_particles(formats_dir / "cryosparc_J2_particles_exported.cs")
    assert not table.has_poses
    assert all(not p.startswith(">") for p in table.image_paths)
    with pytest.raises(InputFileError, match="no 3-D poses"):
        table.require_poses()


def test_toy_projections_need_a_pixel_size(formats_dir):
    path = formats_dir / "toy_projections.star"
    with pytest.raises(InputFileError, match="toy_projections.star.*pixel_size_A"):
        read_particles(path)
    table = read_particles(path, pixel_size_A=2.0)
    assert len(table) == 1000 and table.pixel_size_A == 2.0 and table.box == 30
    np.testing.assert_array_equal(table.phase_shift_deg, 90.0)
    source = ImageSource(table)
    source.check_all_present()
    assert source.read([999, 0]).shape == (2, 30, 30)
    source.close()


def test_non_cubic_map_is_rejected(formats_dir):
    with pytest.raises(InputFileError, match="spike-vol.mrc.*cubic"):
        read_map(formats_dir / "spike-vol.mrc")

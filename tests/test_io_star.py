"""RELION STAR reading and writing on synthetic files: round trips, pose convention, 3.0 input."""

from __future__ import annotations

import numpy as np
import pytest
import starfile
from scipy.spatial.transform import Rotation

from flexcore.core.errors import InputFileError
from flexcore.core.io import (
    OpticsGroup,
    ParticleTable,
    latents_to_star_columns,
    read_particles,
    read_star,
    resolve_image_path,
    write_stack,
    write_star,
)
from flexcore.core.io.star import STAR_VERSION_LINE
from flexcore.core.rotations import random_rotations


def make_table(n: int, rng: np.random.Generator, stack: str = "particles.mrcs",
               source_path: str = "") -> ParticleTable:
    """A table with two optics groups, random poses, shifts, CTF and half-sets."""
    optics = [
        OpticsGroup("groupA", 1.25, 32, 300.0, 2.7, 0.1, beam_tilt_x_mrad=0.3,
                    odd_zernike=(0.1, -0.2, 0.0, 0.0, 0.0, 0.5)),
        OpticsGroup("groupB", 1.25, 32, 200.0, 2.0, 0.07, even_zernike=(1.5, -2.0, 3.25)),
    ]
    return ParticleTable(
        rotations=random_rotations(n, rng),
        shifts_A=rng.uniform(-5, 5, (n, 2)),
        defocus_u_A=rng.uniform(8000, 20000, n),
        defocus_v_A=rng.uniform(8000, 20000, n),
        defocus_angle_deg=rng.uniform(-180, 180, n),
        phase_shift_deg=rng.uniform(0, 90, n),
        bfactor_A2=rng.uniform(0, 50, n),
        ctf_scale=rng.uniform(0.8, 1.0, n),
        optics_group=rng.integers(0, 2, n),
        optics=optics,
        image_paths=np.asarray([stack] * n, dtype=object),
        image_indices=rng.permutation(n),
        half_set=rng.integers(0, 2, n).astype(np.int8),
        source_path=source_path,
    )


def star_text(columns: list[str], rows: list[list], optics: dict | None = None) -> str:
    """A STAR file: an optional one-row ``data_optics`` and a particle loop."""
    out = []
    if optics is not None:
        out += ["data_optics", "", "loop_"] + [f"_{k}" for k in optics]
        out += [" ".join(str(v) for v in optics.values()), ""]
    out += ["data_particles" if optics is not None else "data_images", "", "loop_"]
    out += [f"_{c}" for c in columns]
    out += [" ".join(str(v) for v in row) for row in rows]
    return "\n".join(out) + "\n"


def test_round_trip_keeps_poses_shifts_ctf_images_and_half_sets(tmp_path, rng):
    table = make_table(40, rng, source_path=str(tmp_path / "in.star"))
    write_stack(tmp_path / "particles.mrcs", np.zeros((40, 32, 32), np.float32), 1.25)
    out = tmp_path / "sub" / "out.star"
    z = rng.normal(size=(40, 2))
    write_star(table, out, extra_columns=latents_to_star_columns(z))
    back = read_particles(out)

    assert back.source_format == "relion31"
    np.testing.assert_allclose(back.rotations, table.rotations, atol=1e-5)
    np.testing.assert_allclose(back.shifts_A, table.shifts_A, atol=1e-6)
    for name in ("defocus_u_A", "defocus_v_A", "defocus_angle_deg", "phase_shift_deg",
                 "bfactor_A2", "ctf_scale"):
        np.testing.assert_allclose(getattr(back, name), getattr(table, name), rtol=1e-8,
                                   err_msg=name)
    np.testing.assert_array_equal(back.half_set, table.half_set)
    np.testing.assert_array_equal(back.optics_group, table.optics_group)
    np.testing.assert_array_equal(back.image_indices, table.image_indices)
    # The stack resolves, so the written path is relative to the new folder and still finds it.
    assert set(back.image_paths) == {"../particles.mrcs"}
    assert resolve_image_path("../particles.mrcs", out.parent).samefile(tmp_path / "particles.mrcs")
    assert back.optics == table.optics
    np.testing.assert_allclose(back.raw["flexLatent1"], z[:, 0], rtol=1e-8)
    np.testing.assert_allclose(back.raw["flexLatent2"], z[:, 1], rtol=1e-8)


def test_written_blocks_start_with_the_relion_version_line(tmp_path, rng):
    out = tmp_path / "out.star"
    write_star(make_table(5, rng), out)
    lines = out.read_text().splitlines()
    blocks = [i for i, line in enumerate(lines) if line.startswith("data_")]
    assert [lines[i] for i in blocks] == ["data_optics", "data_particles"]
    for i in blocks:
        previous = [line for line in lines[:i] if line.strip()][-1]
        assert previous == STAR_VERSION_LINE == "# version 30001"


def test_star_angles_follow_the_relion_convention(tmp_path, rng):
    table = make_table(25, rng)
    out = tmp_path / "poses.star"
    write_star(table, out)
    particles = starfile.read(out, always_dict=True)["particles"]
    angles = particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    mats = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()
    np.testing.assert_allclose(np.swapaxes(mats, 1, 2), table.rotations, atol=1e-7)
    # Origins are written in Å under the RELION 3.1 names.
    np.testing.assert_allclose(particles["rlnOriginXAngst"], table.shifts_A[:, 0], atol=1e-8)
    np.testing.assert_allclose(particles["rlnOriginYAngst"], table.shifts_A[:, 1], atol=1e-8)
    # Image names are 1-based N@stack.
    assert particles["rlnImageName"][0] == f"{table.image_indices[0] + 1:06d}@particles.mrcs"


def test_subset_and_edits_are_reflected_and_input_columns_carried(tmp_path):
    columns = ["rlnImageName", "rlnOpticsGroup", "rlnDefocusU", "rlnDefocusV",
               "rlnDefocusAngle", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
               "rlnOriginXAngst", "rlnOriginYAngst", "rlnClassNumber", "rlnMicrographName"]
    rows = [[f"{i + 1}@s.mrcs", 1, 10000 + i, 9000 + i, 10.0, 10.0 * i, 45.0, -30.0,
             0.5 * i, -0.25 * i, i % 3 + 1, f"mic{i}.mrc"] for i in range(6)]
    optics = {"rlnOpticsGroup": 1, "rlnOpticsGroupName": "og", "rlnVoltage": 300,
              "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
              "rlnImagePixelSize": 1.1, "rlnImageSize": 64, "rlnMagMat00": 1.0013}
    src = tmp_path / "in.star"
    src.write_text(star_text(columns, rows, optics))
    table = read_star(src)
    sub = table.subset([4, 1])
    sub.defocus_u_A[:] = [123.0, 456.0]
    sub.optics[0].image_size = 32
    assert table.optics[0].image_size == 64  # the subset's optics groups are its own
    out = tmp_path / "out.star"
    write_star(sub, out)
    blocks = starfile.read(out, always_dict=True)
    p = blocks["particles"]
    assert list(p["rlnMicrographName"]) == ["mic4.mrc", "mic1.mrc"]
    assert list(p["rlnClassNumber"]) == [2, 2]
    assert list(p["rlnDefocusU"]) == [123.0, 456.0]
    assert list(p["rlnImageName"]) == ["000005@s.mrcs", "000002@s.mrcs"]
    assert blocks["optics"]["rlnMagMat00"][0] == pytest.approx(1.0013)
    assert blocks["optics"]["rlnImageSize"][0] == 32
    assert "rlnRandomSubset" not in p.columns  # no half-sets known, none invented


def test_relion30_pixel_size_origins_and_conversion_to_31(tmp_path):
    columns = ["rlnImageName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
               "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnMagnification",
               "rlnDetectorPixelSize", "rlnOriginX", "rlnOriginY", "rlnAngleRot",
               "rlnAngleTilt", "rlnAnglePsi", "rlnRandomSubset"]
    rows = [["1@a.mrcs", 15000, 14000, 5, 300, 2.7, 0.07, 50000, 5, 2.0, -1.0, 10, 20, 30, 1],
            ["2@a.mrcs", 15000, 14000, 5, 300, 2.7, 0.07, 50000, 5, 0.0, 3.0, 10, 20, 30, 2],
            ["1@b.mrcs", 15000, 14000, 5, 200, 2.0, 0.1, 50000, 5, 1.0, 1.0, 10, 20, 30, 2]]
    src = tmp_path / "r30.star"
    src.write_text(star_text(columns, rows))
    table = read_star(src)
    assert table.source_format == "relion30"
    assert table.pixel_size_A == pytest.approx(1.0)  # 5 µm × 1e4 / 50000
    assert len(table.optics) == 2  # (300 kV, 2.7 mm, 0.07) and (200 kV, 2.0 mm, 0.1)
    np.testing.assert_array_equal(table.optics_group, [0, 0, 1])
    np.testing.assert_allclose(table.shifts_A, [[2.0, -1.0], [0.0, 3.0], [1.0, 1.0]])
    np.testing.assert_array_equal(table.half_set, [0, 1, 1])
    np.testing.assert_array_equal(table.image_indices, [0, 1, 0])

    out = tmp_path / "r31.star"
    write_star(table, out)
    blocks = starfile.read(out, always_dict=True)
    assert "rlnOriginX" not in blocks["particles"].columns
    assert "rlnVoltage" not in blocks["particles"].columns
    assert list(blocks["optics"]["rlnVoltage"]) == [300, 200]
    back = read_star(out)
    np.testing.assert_allclose(back.shifts_A, table.shifts_A, atol=1e-9)
    assert [o.voltage_kv for o in back.optics] == [300.0, 200.0]


def test_relion30_pixel_size_from_argument_only_when_the_file_has_none(tmp_path):
    columns = ["rlnImageName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
               "rlnSphericalAberration", "rlnAmplitudeContrast"]
    src = tmp_path / "nopix.star"
    src.write_text(star_text(columns, [["1@a.mrcs", 1e4, 1e4, 0, 300, 2.7, 0.1]]))
    with pytest.raises(InputFileError, match="nopix.star.*rlnImagePixelSize.*rlnDetectorPixel"
                       ".*pixel_size_A"):
        read_star(src)
    assert read_star(src, pixel_size_A=2.5).pixel_size_A == 2.5

    src.write_text(star_text(columns + ["rlnImagePixelSize"],
                             [["1@a.mrcs", 1e4, 1e4, 0, 300, 2.7, 0.1, 1.7]]))
    assert read_star(src, pixel_size_A=2.5).pixel_size_A == 1.7


def test_missing_angle_column_loads_without_poses(tmp_path):
    columns = ["rlnImageName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnAngleRot",
               "rlnAngleTilt"]
    optics = {"rlnOpticsGroup": 1, "rlnVoltage": 300, "rlnSphericalAberration": 2.7,
              "rlnAmplitudeContrast": 0.1, "rlnImagePixelSize": 1.0, "rlnImageSize": 16}
    src = tmp_path / "noposes.star"
    src.write_text(star_text(columns, [["1@a.mrcs", 1e4, 1e4, 0, 5, 6]], optics))
    table = read_star(src)
    assert table.rotations is None and not table.has_poses
    with pytest.raises(InputFileError, match="noposes.star.*no 3-D poses"):
        table.require_poses()


def test_several_optics_groups_join_by_number_not_by_order(tmp_path):
    text = "\n".join([
        "data_optics", "loop_", "_rlnOpticsGroup", "_rlnOpticsGroupName", "_rlnVoltage",
        "_rlnSphericalAberration", "_rlnAmplitudeContrast", "_rlnImagePixelSize",
        "_rlnImageSize", "_rlnOddZernike",
        "7 seven 300 2.7 0.1 1.0 64 [0.5,-0.25]",
        "3 three 200 2.0 0.07 1.0 64 [1,2,3]",
        "", "data_particles", "loop_", "_rlnImageName", "_rlnOpticsGroup", "_rlnDefocusU",
        "_rlnDefocusV", "_rlnDefocusAngle",
        "1@s.mrcs 3 1e4 1e4 0", "2@s.mrcs 7 1e4 1e4 0", "3@s.mrcs 3 1e4 1e4 0", "",
    ])
    src = tmp_path / "groups.star"
    src.write_text(text)
    table = read_star(src)
    assert [o.name for o in table.optics] == ["seven", "three"]
    np.testing.assert_array_equal(table.optics_group, [1, 0, 1])
    assert table.optics[0].odd_zernike == (0.5, -0.25)
    assert table.optics[1].voltage_kv == 200.0
    # Written back, groups are renumbered 1..G in both blocks and still join correctly.
    out = tmp_path / "groups_out.star"
    write_star(table, out)
    back = read_star(out)
    np.testing.assert_array_equal(back.optics_group, table.optics_group)
    assert back.optics == table.optics


def test_relion30_box_comes_from_the_stack_header_or_stays_unknown(tmp_path):
    columns = ["rlnImageName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
               "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize"]
    src = tmp_path / "r30.star"
    src.write_text(star_text(columns, [["2@stack.mrcs", 1e4, 1e4, 0, 300, 2.7, 0.1, 1.5]]))
    unknown = read_star(src)
    assert unknown.box == 0  # no rlnImageSize in 3.0 and no stack to look at
    write_star(unknown, tmp_path / "unknown31.star")
    assert "rlnImageSize" not in starfile.read(tmp_path / "unknown31.star")["optics"].columns

    write_stack(tmp_path / "stack.mrcs", np.zeros((2, 24, 24), np.float32), 1.5)
    assert read_star(src).box == 24

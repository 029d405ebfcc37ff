"""cryoSPARC ``.cs`` reading and writing: round trips, cross-format equivalence, latent export."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from flexcore.core.io import latents_to_cs_fields, read_cs, read_particles, write_cs, write_star
from flexcore.core.rotations import random_rotations


def make_cs(n: int, rng: np.random.Generator, stack: bytes = b"J3/extract/stack.mrc",
            with_3d: bool = True) -> np.ndarray:
    """A cryoSPARC-like particle array with two exposure groups."""
    fields = [
        ("uid", "<u8"), ("blob/path", "S40"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
        ("blob/psize_A", "<f4"), ("blob/sign", "<f4"), ("ctf/type", "S9"),
        ("ctf/exp_group_id", "<u4"), ("ctf/accel_kv", "<f4"), ("ctf/cs_mm", "<f4"),
        ("ctf/amp_contrast", "<f4"), ("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4"),
        ("ctf/df_angle_rad", "<f4"), ("ctf/phase_shift_rad", "<f4"), ("ctf/scale", "<f4"),
        ("ctf/bfactor", "<f4"), ("ctf/tilt_A", "<f4", (2,)),
    ]
    if with_3d:
        fields += [("alignments3D/split", "<u4"), ("alignments3D/shift", "<f4", (2,)),
                   ("alignments3D/pose", "<f4", (3,)), ("alignments3D/psize_A", "<f4"),
                   ("alignments3D/error", "<f4")]
    arr = np.zeros(n, dtype=fields)
    arr["uid"] = rng.integers(0, 2**63, n, dtype=np.uint64)
    arr["blob/path"] = stack
    arr["blob/idx"] = rng.permutation(n)
    arr["blob/shape"] = 64
    arr["blob/psize_A"] = 1.5
    arr["blob/sign"] = -1
    arr["ctf/type"] = b"ctffind4"
    arr["ctf/exp_group_id"] = rng.integers(0, 2, n)
    arr["ctf/accel_kv"] = 300
    arr["ctf/cs_mm"] = np.where(arr["ctf/exp_group_id"] == 0, 2.7, 0.01)
    arr["ctf/amp_contrast"] = 0.07
    arr["ctf/df1_A"] = rng.uniform(1e4, 2e4, n)
    arr["ctf/df2_A"] = arr["ctf/df1_A"] - rng.uniform(0, 500, n)
    arr["ctf/df_angle_rad"] = rng.uniform(-np.pi, np.pi, n)
    arr["ctf/phase_shift_rad"] = rng.uniform(0, 1, n)
    arr["ctf/scale"] = 1
    arr["ctf/bfactor"] = rng.uniform(0, 20, n)
    if with_3d:
        arr["alignments3D/split"] = rng.integers(0, 2, n)
        arr["alignments3D/shift"] = rng.uniform(-4, 4, (n, 2))
        arr["alignments3D/pose"] = Rotation.from_matrix(random_rotations(n, rng)).as_rotvec()
        arr["alignments3D/psize_A"] = 1.5
        arr["alignments3D/error"] = rng.uniform(0, 1, n)
    return arr


def save_cs(path, arr) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)


def test_read_cs_conventions(tmp_path, rng):
    arr = make_cs(30, rng)
    save_cs(tmp_path / "p.cs", arr)
    t = read_particles(tmp_path / "p.cs")
    assert t.source_format == "cryosparc" and t.raw is not None
    np.testing.assert_allclose(t.rotations, Rotation.from_rotvec(arr["alignments3D/pose"])
                               .as_matrix(), atol=1e-6)
    np.testing.assert_allclose(t.shifts_A, arr["alignments3D/shift"] * 1.5, rtol=1e-6)
    np.testing.assert_allclose(t.defocus_angle_deg, np.rad2deg(arr["ctf/df_angle_rad"]),
                               rtol=1e-6)
    np.testing.assert_allclose(t.phase_shift_deg, np.rad2deg(arr["ctf/phase_shift_rad"]),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(t.image_indices, arr["blob/idx"])  # both 0-based
    np.testing.assert_array_equal(t.half_set, arr["alignments3D/split"])
    assert set(t.image_paths) == {"J3/extract/stack.mrc"}
    # Two exposure groups with different Cs → two optics groups.
    assert sorted(o.spherical_aberration_mm for o in t.optics) == [0.01, 2.7]
    cs_of_particle = np.array([t.optics[g].spherical_aberration_mm for g in t.optics_group])
    np.testing.assert_allclose(cs_of_particle, arr["ctf/cs_mm"], rtol=1e-6)
    assert t.pixel_size_A == 1.5 and t.box == 64


def test_cs_round_trip_carries_every_field_and_updates_edits(tmp_path, rng):
    arr = make_cs(30, rng)
    save_cs(tmp_path / "p.cs", arr)
    table = read_cs(tmp_path / "p.cs")
    sub = table.subset(np.arange(29, -1, -2))
    sub.defocus_u_A = sub.defocus_u_A + 100.0
    sub.shifts_A = sub.shifts_A * 0.5
    out = tmp_path / "out" / "sub.cs"
    write_cs(sub, out)
    written = np.load(out)
    assert out.exists() and not (tmp_path / "out" / "sub.cs.npy").exists()
    assert set(arr.dtype.names) <= set(written.dtype.names)
    np.testing.assert_array_equal(written["uid"], arr["uid"][29::-2])
    np.testing.assert_array_equal(written["alignments3D/error"], arr["alignments3D/error"][29::-2])
    assert written["ctf/type"][0] == b"ctffind4"
    back = read_cs(out)
    np.testing.assert_allclose(back.rotations, sub.rotations, atol=1e-5)
    np.testing.assert_allclose(back.shifts_A, sub.shifts_A, atol=1e-5)
    np.testing.assert_allclose(back.defocus_u_A, sub.defocus_u_A, rtol=1e-6)
    np.testing.assert_allclose(back.defocus_angle_deg, sub.defocus_angle_deg, atol=1e-4)
    np.testing.assert_array_equal(back.half_set, sub.half_set)
    np.testing.assert_array_equal(back.image_indices, sub.image_indices)
    # The stack does not exist, so its path is kept as given.
    assert set(back.image_paths) == {"J3/extract/stack.mrc"}


def test_exported_path_prefix_is_stripped_on_read_and_kept_on_write(tmp_path, rng):
    arr = make_cs(4, rng, stack=b">J1/imported/x.mrcs", with_3d=False)
    save_cs(tmp_path / "e.cs", arr)
    t = read_cs(tmp_path / "e.cs")
    assert set(t.image_paths) == {"J1/imported/x.mrcs"}
    assert t.rotations is None
    write_cs(t, tmp_path / "again.cs")
    assert set(np.load(tmp_path / "again.cs")["blob/path"]) == {b">J1/imported/x.mrcs"}


def test_cs_to_star_reads_back_the_same_particles(tmp_path, rng):
    arr = make_cs(50, rng)
    save_cs(tmp_path / "p.cs", arr)
    direct = read_particles(tmp_path / "p.cs")
    write_star(direct, tmp_path / "p.star")
    via_star = read_particles(tmp_path / "p.star")
    assert via_star.source_format == "relion31"
    # Matrices, not angles: Euler angles are not unique near gimbal lock.
    np.testing.assert_allclose(via_star.rotations, direct.rotations, atol=1e-6)
    np.testing.assert_allclose(via_star.shifts_A, direct.shifts_A, atol=1e-6)
    for name in ("defocus_u_A", "defocus_v_A", "defocus_angle_deg", "phase_shift_deg",
                 "bfactor_A2", "ctf_scale"):
        np.testing.assert_allclose(getattr(via_star, name), getattr(direct, name), atol=1e-5,
                                   err_msg=name)
    np.testing.assert_array_equal(via_star.half_set, direct.half_set)
    np.testing.assert_array_equal(via_star.image_indices, direct.image_indices)
    assert via_star.raw["rlnImageName"][0] == f"{arr['blob/idx'][0] + 1:06d}@J3/extract/stack.mrc"
    assert via_star.optics == direct.optics


def test_star_source_writes_standard_cs_fields(tmp_path, rng):
    arr = make_cs(12, rng)
    save_cs(tmp_path / "p.cs", arr)
    write_star(read_cs(tmp_path / "p.cs"), tmp_path / "p.star")
    from_star = read_particles(tmp_path / "p.star")
    write_cs(from_star, tmp_path / "q.cs")
    q = np.load(tmp_path / "q.cs")
    assert q["uid"].dtype == np.uint64
    # random 64-bit uids, stable: the same when written again, and a function of the STAR row
    assert len(set(q["uid"].tolist())) == 12 and q["uid"].max() > 2**40
    write_cs(from_star, tmp_path / "again.cs")
    np.testing.assert_array_equal(np.load(tmp_path / "again.cs")["uid"], q["uid"])
    write_cs(from_star.subset([5, 2]), tmp_path / "two.cs", source_rows=[5, 2])
    np.testing.assert_array_equal(np.load(tmp_path / "two.cs")["uid"], q["uid"][[5, 2]])
    for name in ("blob/path", "blob/idx", "blob/shape", "blob/psize_A", "ctf/df1_A",
                 "ctf/df_angle_rad", "alignments3D/pose", "alignments3D/shift",
                 "alignments3D/split", "blob/sign", "blob/import_sig", "ctf/type",
                 "ctf/anisomag", "ctf/tilt_A", "ctf/shift_A", "ctf/trefoil_A", "ctf/tetra_A"):
        assert name in q.dtype.names, name
    np.testing.assert_array_equal(q["blob/idx"], arr["blob/idx"])
    np.testing.assert_array_equal(q["alignments3D/split"], arr["alignments3D/split"])
    np.testing.assert_allclose(q["alignments3D/shift"], arr["alignments3D/shift"], atol=1e-5)
    np.testing.assert_allclose(Rotation.from_rotvec(q["alignments3D/pose"]).as_matrix(),
                               Rotation.from_rotvec(arr["alignments3D/pose"]).as_matrix(),
                               atol=1e-5)


@pytest.mark.parametrize("k_dim", [1, 3])
def test_latent_export_fields(tmp_path, rng, k_dim):
    arr = make_cs(10, rng)
    save_cs(tmp_path / "p.cs", arr)
    z = rng.uniform(-1.5, 1.5, (10, k_dim))
    write_cs(read_cs(tmp_path / "p.cs"), tmp_path / "latents.cs",
             extra_fields=latents_to_cs_fields(z))
    out = np.load(tmp_path / "latents.cs")
    for k in range(k_dim):
        comp, val = out[f"components_mode_{k}/component"], out[f"components_mode_{k}/value"]
        assert comp.dtype == np.dtype("<u4") and val.dtype == np.dtype("<f4")
        np.testing.assert_array_equal(comp, k)
        np.testing.assert_allclose(val, z[:, k], rtol=1e-6)
    assert f"components_mode_{k_dim}/value" not in out.dtype.names

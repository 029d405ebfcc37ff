"""Rotation conventions against independent formulas (RELION euler.cpp, Rodrigues)."""

import numpy as np
import pytest

from flexcore.core.rotations import (
    axis_angle_to_matrix,
    euler_relion_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler_relion,
    random_rotations,
)


def relion_euler_angles2matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix (src/euler.cpp), written out element by element."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ])


def test_euler_matches_relion_formula(rng):
    angles = rng.uniform([-180, 0, -180], [180, 180, 180], size=(50, 3))
    ours = euler_relion_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    for a, m in zip(angles, ours):
        np.testing.assert_allclose(m, relion_euler_angles2matrix(*a), atol=1e-12)


def test_tilt_moves_the_viewing_direction():
    # A maps reference to particle coordinates; with tilt 90 about y the reference x axis
    # becomes the particle frame's z (the beam), i.e. the view is along reference x.
    a = euler_relion_to_matrix(0.0, 90.0, 0.0)[0]
    np.testing.assert_allclose(a @ np.array([1.0, 0, 0]), [0, 0, 1], atol=1e-12)


def test_euler_round_trip(rng):
    mats = random_rotations(200, rng)
    back = euler_relion_to_matrix(*matrix_to_euler_relion(mats).T)
    np.testing.assert_allclose(back, mats, atol=1e-10)


def test_axis_angle_is_rodrigues_and_round_trips(rng):
    v = rng.normal(size=(20, 3))
    mats = axis_angle_to_matrix(v)
    for vec, m in zip(v, mats):
        th = np.linalg.norm(vec)
        k = vec / th
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        np.testing.assert_allclose(m, np.eye(3) + np.sin(th) * kx + (1 - np.cos(th)) * kx @ kx,
                                   atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix(matrix_to_axis_angle(mats)), mats, atol=1e-10)


def test_random_rotations_are_uniform():
    mats = random_rotations(20000, 3)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-9)
    # Haar measure: each viewing direction (third row) is uniform on the sphere, so its
    # z component is uniform on [-1, 1] and the mean of every matrix element is 0.
    z = mats[:, 2, 2]
    hist, _ = np.histogram(z, bins=10, range=(-1, 1))
    assert hist.min() > 0.9 * len(z) / 10 and hist.max() < 1.1 * len(z) / 10
    assert np.abs(mats.mean(axis=0)).max() < 0.02


@pytest.mark.parametrize("seed", [0, 1])
def test_random_rotations_seeded(seed):
    np.testing.assert_array_equal(random_rotations(5, seed), random_rotations(5, seed))

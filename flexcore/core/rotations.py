"""Rotation conventions: RELION Euler angles, cryoSPARC axis-angle poses, random rotations.

Every matrix here is RELION's ``A``: it left-multiplies ``(x, y, z)`` column vectors of
reference (map) coordinates and returns particle-frame coordinates, ``p = A @ r``; the
projection integrates along the particle frame's z. RELION's
``Euler_angles2matrix(rot, tilt, psi)`` equals
``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix().T``.

cryoSPARC's ``alignments3D/pose`` is an axis-angle (Rodrigues) vector in radians whose
exponential map is the same matrix ``A`` (pyem converts it to RELION angles with
``rot2euler(expmap(pose))``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def euler_relion_to_matrix(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """RELION Euler angles (degrees, ZYZ) → matrices ``A`` of shape ``(n, 3, 3)``."""
    angles = np.stack(np.broadcast_arrays(rot_deg, tilt_deg, psi_deg), axis=-1).reshape(-1, 3)
    mats = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()
    return np.ascontiguousarray(np.swapaxes(mats, -1, -2))


def matrix_to_euler_relion(matrices: np.ndarray) -> np.ndarray:
    """Matrices ``A`` ``(n, 3, 3)`` → RELION ``(rot, tilt, psi)`` in degrees, ``(n, 3)``.

    Gimbal-lock cases (tilt 0 or 180) put the whole in-plane angle into ``rot`` or ``psi``
    as scipy does; the matrix is preserved exactly either way.
    """
    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gimbal lock warning
        return Rotation.from_matrix(np.swapaxes(matrices, -1, -2)).as_euler("ZYZ", degrees=True)


def axis_angle_to_matrix(pose: np.ndarray) -> np.ndarray:
    """cryoSPARC ``alignments3D/pose`` (axis-angle, radians) ``(n, 3)`` → ``A`` ``(n, 3, 3)``."""
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_rotvec(pose).as_matrix()


def matrix_to_axis_angle(matrices: np.ndarray) -> np.ndarray:
    """Matrices ``A`` ``(n, 3, 3)`` → cryoSPARC axis-angle poses ``(n, 3)`` (radians)."""
    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    return Rotation.from_matrix(matrices).as_rotvec()


def random_rotations(n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """``n`` rotation matrices drawn uniformly from SO(3) (Haar measure), ``(n, 3, 3)``."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    # Uniform unit quaternions (Shoemake): normalised 4-D Gaussians are uniform on S^3.
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Rotation.from_quat(q).as_matrix()


def rotation_about_axis(axis, angle_rad) -> np.ndarray:
    """Active rotation by ``angle_rad`` about unit ``axis`` (x, y, z), ``(3, 3)``."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * float(angle_rad)).as_matrix()

"""A pseudo-protein made of Gaussian "atoms" laid out as helices and sheets, in domains.

The phantom is asymmetric and has secondary-structure-like detail (rods ~10 Å apart, sheets),
so projections carry orientation information at every resolution the demo reaches and
convention errors (a transpose, a sign) destroy reconstructions instead of hiding in blobs.
Positions are in Å relative to the box centre, ``(x, y, z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.rotations import random_rotations, rotation_about_axis


@dataclass
class Phantom:
    """Atoms of a pseudo-protein.

    Attributes
    ----------
    positions_A : ``(A, 3)`` atom centres ``(x, y, z)`` in Å from the box centre.
    weights : ``(A,)`` atom masses (arbitrary units).
    domain : ``(A,)`` domain label of each atom (0 = core).
    sigma_A : Gaussian width of every atom in Å.
    hinge_points_A, hinge_axes : per moving domain ``d >= 1``, a point on its hinge axis and
        the unit axis; ``hinge_points_A[d - 1]``.
    """

    positions_A: np.ndarray
    weights: np.ndarray
    domain: np.ndarray
    sigma_A: float
    hinge_points_A: np.ndarray
    hinge_axes: np.ndarray

    @property
    def n_domains(self) -> int:
        return int(self.domain.max()) + 1


def _helix(length_A: float, rng) -> np.ndarray:
    """Atoms of an α-helix-like rod along z: Cα spiral (radius 2.3 Å, 1.5 Å rise, 100°/res)
    plus a side atom per residue further out, so the rod reads as a ~10 Å cylinder."""
    n = max(4, int(length_A / 1.5))
    k = np.arange(n)
    ang = np.deg2rad(100.0) * k + rng.uniform(0, 2 * np.pi)
    z = 1.5 * k - 0.75 * n
    ca = np.stack([2.3 * np.cos(ang), 2.3 * np.sin(ang), z], axis=1)
    side = np.stack([4.0 * np.cos(ang + 0.3), 4.0 * np.sin(ang + 0.3), z + 0.7], axis=1)
    return np.concatenate([ca, side])


def _sheet(n_strands: int, length_A: float) -> np.ndarray:
    """A flat β-sheet-like slab: zig-zag strands 4.8 Å apart with 3.3 Å rise per residue."""
    n = max(3, int(length_A / 3.3))
    pts = []
    for s in range(n_strands):
        k = np.arange(n)
        x = 3.3 * k - 1.65 * n
        y = np.full(n, 4.8 * (s - (n_strands - 1) / 2))
        z = 0.9 * (-1.0) ** k
        pts.append(np.stack([x, y, z], axis=1))
    return np.concatenate(pts)


def _domain(rng, n_helices: int, sheet: bool) -> np.ndarray:
    """A compact domain: helices packed on a jittered hexagonal lattice (10 Å apart) with
    random tilts, optionally capped by a sheet."""
    lattice = []
    ring = 0
    while len(lattice) < n_helices:
        for q in range(-ring, ring + 1):
            for r in range(-ring, ring + 1):
                if max(abs(q), abs(r), abs(-q - r)) == ring:
                    lattice.append((10.0 * (q + 0.5 * r), 10.0 * 0.866 * r))
        ring += 1
    atoms = []
    for x0, y0 in lattice[:n_helices]:
        h = _helix(rng.uniform(18.0, 30.0), rng)
        tilt = rotation_about_axis(rng.standard_normal(3), np.deg2rad(rng.uniform(5, 25)))
        atoms.append(h @ tilt.T + np.array([x0, y0, rng.uniform(-3, 3)]))
    if sheet:
        s = _sheet(4, 20.0)
        top = max(a[:, 2].max() for a in atoms)
        atoms.append(s + np.array([0.0, 0.0, top + 5.0]))
    pts = np.concatenate(atoms)
    return pts - pts.mean(axis=0)


def make_phantom(seed: int = 0, n_moving: int = 1, sigma_A: float = 2.0) -> Phantom:
    """Build a three-domain pseudo-protein: a core (domain 0), a hinged arm (domain 1) and a
    third domain that is rigidly attached (``n_moving = 1``) or hinged on its own axis
    (``n_moving = 2``, for two independent motions).

    The layout is deliberately asymmetric (different domain sizes, an off-axis arm).
    Extent is about 90 Å, so it fits a 160 Å box with room for the motion and CTF.
    """
    rng = np.random.default_rng(seed)
    core = _domain(rng, 9, sheet=True)
    arm = _domain(rng, 5, sheet=False)
    third = _domain(rng, 4, sheet=True)
    # Orient the domains randomly so no axis is special, then place them.
    core = core @ random_rotations(1, rng)[0].T
    arm = arm @ random_rotations(1, rng)[0].T
    third = third @ random_rotations(1, rng)[0].T
    arm_centre = np.array([27.0, 8.0, -4.0])
    third_centre = np.array([-18.0, -20.0, 10.0])
    positions = np.concatenate([core, arm + arm_centre, third + third_centre])
    domain = np.concatenate([
        np.zeros(len(core), int), np.ones(len(arm), int), np.full(len(third), 2, int)
    ])
    shift = positions.mean(axis=0)
    positions = positions - shift
    # Hinges: at the interface between the core and each moving domain, axis roughly
    # perpendicular to the line joining them, so the domain swings like a lid.
    hinge_points, hinge_axes = [], []
    for centre in (arm_centre, third_centre)[:n_moving]:
        direction = centre / np.linalg.norm(centre)
        hinge_points.append(0.45 * centre - shift)
        axis = np.cross(direction, np.array([0.3, 0.2, 1.0]))
        hinge_axes.append(axis / np.linalg.norm(axis))
    if n_moving < 2:
        domain[domain == 2] = 0  # the third domain moves with the core
    weights = np.ones(len(positions))
    return Phantom(positions, weights, domain, sigma_A, np.array(hinge_points),
                   np.array(hinge_axes))


def deform(phantom: Phantom, coordinate: np.ndarray, max_angle_deg: float) -> np.ndarray:
    """Atom positions for motion coordinates ``coordinate`` (``(n_moving,)`` in [-1, 1]).

    Moving domain ``d`` rotates by ``coordinate[d-1] · max_angle_deg`` about its hinge axis.
    Returns ``(A, 3)`` positions in Å.
    """
    pos = phantom.positions_A.copy()
    coordinate = np.atleast_1d(coordinate)
    for d in range(1, len(phantom.hinge_axes) + 1):
        sel = phantom.domain == d
        rot = rotation_about_axis(phantom.hinge_axes[d - 1],
                                  np.deg2rad(max_angle_deg * coordinate[d - 1]))
        p0 = phantom.hinge_points_A[d - 1]
        pos[sel] = (pos[sel] - p0) @ rot.T + p0
    return pos


def domain_rmsd_A(phantom: Phantom, d: int, max_angle_deg: float) -> float:
    """RMSD (Å) of moving domain ``d`` (1-based) between the end states, its coordinate at
    −1 and at +1 (the other coordinates at 0): the motion's amplitude in structural terms."""
    n_moving = len(phantom.hinge_axes)
    lo, hi = np.zeros(n_moving), np.zeros(n_moving)
    lo[d - 1], hi[d - 1] = -1.0, 1.0
    sel = phantom.domain == d
    diff = deform(phantom, hi, max_angle_deg)[sel] - deform(phantom, lo, max_angle_deg)[sel]
    return float(np.sqrt((diff ** 2).sum(axis=1).mean()))

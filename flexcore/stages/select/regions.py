"""Regions of latent space: which particles a selection takes.

Every function takes the particles' latents ``z (N, K)`` (prepared-particle order, latent
units) and returns :class:`Subset` s: a boolean membership per particle, a name and the
latent point that represents the subset (its *state*, where per-state maps are made).

* ``box``: ``|z_k − c_k| ≤ w_k`` for every dimension ``k`` (centre ``c``, half widths ``w``);
  state ``c``.
* ``ellipse``: ``Σ_k ((z_k − c_k) / w_k)² ≤ 1`` (semi-axes ``w`` along the latent axes);
  state ``c``.
* ``percentile``: ``P_lo ≤ z_a ≤ P_hi`` along one axis ``a``, with ``P`` the particles'
  percentiles of ``z_a``; state: the median latent of the members.
* ``kmeans``: k-means clusters of the latents (``scipy.cluster.vq.kmeans2``, k-means++
  start, seeded), numbered by their centroid's first coordinate (then the next); a partition
  of the particles; state: the centroid.
* ``points``: for each given latent point, the particles within Euclidean distance ``radius``
  (subsets may overlap); state: the point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.errors import ConfigError
from ...core.io.selection import DrawnSubset

METHODS = ("box", "ellipse", "percentile", "kmeans", "points", "file")


@dataclass
class Subset:
    """One selected set of particles.

    Attributes
    ----------
    name : file-name-safe label (``region``, ``cluster1``, ``point2``…).
    members : ``(N,)`` bool, prepared-particle order.
    state : ``(K,)`` float64 latent point representing the subset.
    description : one line saying how it was chosen.
    """

    name: str
    members: np.ndarray
    state: np.ndarray
    description: str

    @property
    def count(self) -> int:
        return int(self.members.sum())


def _vector(value, k: int, key: str, positive: bool = False, repeat: bool = False
            ) -> np.ndarray:
    """A latent-space vector of length ``k`` from a config value; with ``repeat`` a single
    number stands for all ``k`` (half widths), otherwise ``k`` numbers are needed (a point:
    ``--center 0`` for a 2-D latent space is refused, not read as ``(0, 0)``)."""
    if value is None:
        raise ConfigError(f"{key} is required for this selection method (a list of {k} numbers)")
    try:
        v = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {value!r}: expected {k} number(s)") from None
    if v.size == 1 and repeat:
        v = np.repeat(v, k)
    if v.shape != (k,) or not np.isfinite(v).all():
        raise ConfigError(f"{key} = {value!r}: expected {k} finite number(s), one per latent "
                          "dimension" + ("" if repeat or k == 1 else
                                         " (a point needs every coordinate)"))
    if positive and (v <= 0).any():
        raise ConfigError(f"{key} = {value!r}: every value must be positive")
    return v


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:+.3g}" for x in np.atleast_1d(v)) + ")"


def select_box(z: np.ndarray, center, half_widths) -> Subset:
    """Particles with ``|z_k − c_k| ≤ w_k`` for all ``k``."""
    c = _vector(center, z.shape[1], "select.center")
    w = _vector(half_widths, z.shape[1], "select.half_widths", positive=True, repeat=True)
    inside = np.all(np.abs(z - c) <= w, axis=1)
    return Subset("region", inside, c, f"box centred at {_fmt(c)} with half widths {_fmt(w)}")


def select_ellipse(z: np.ndarray, center, half_widths) -> Subset:
    """Particles with ``Σ_k ((z_k − c_k) / w_k)² ≤ 1``."""
    c = _vector(center, z.shape[1], "select.center")
    w = _vector(half_widths, z.shape[1], "select.half_widths", positive=True, repeat=True)
    inside = (((z - c) / w) ** 2).sum(axis=1) <= 1.0
    return Subset("region", inside, c, f"ellipse centred at {_fmt(c)} with semi-axes {_fmt(w)}")


def select_percentile(z: np.ndarray, axis: int, low: float, high: float) -> Subset:
    """Particles whose ``z_axis`` lies between its ``low`` and ``high`` percentiles
    (``axis`` is 1-based, as in the file columns ``_flexLatent1…``)."""
    k = z.shape[1]
    if not (isinstance(axis, (int, np.integer)) and 1 <= axis <= k):
        raise ConfigError(f"select.axis = {axis!r}: must be a latent dimension 1…{k}")
    if not 0.0 <= low < high <= 100.0:
        raise ConfigError(f"select.percentile_low/high = {low!r}, {high!r}: need 0 ≤ low < high ≤ 100")
    values = z[:, axis - 1]
    lo, hi = np.percentile(values, [low, high])
    inside = (values >= lo) & (values <= hi)
    state = np.median(z[inside], axis=0) if inside.any() else np.zeros(k)
    return Subset("region", inside, state,
                  f"z{axis} between its {low:g}th and {high:g}th percentiles ({lo:+.3f} … {hi:+.3f})")


def select_kmeans(z: np.ndarray, n_clusters: int, seed: int = 0) -> list[Subset]:
    """k-means clusters of the latents (a partition), numbered by centroid coordinates."""
    if not (isinstance(n_clusters, (int, np.integer)) and 1 <= n_clusters <= len(z)):
        raise ConfigError(f"select.n_clusters = {n_clusters!r}: must be an integer 1…{len(z)} "
                          "(the number of particles)")
    # imported here: the Snakefile checks the select parameters with this module, and
    # scipy.cluster took ~0.6 s of every snakemake command's start
    from scipy.cluster.vq import ClusterError, kmeans2

    try:
        centroids, labels = kmeans2(z.astype(np.float64), int(n_clusters), minit="++",
                                    seed=np.random.default_rng(seed), missing="raise")
    except ClusterError:
        raise ConfigError(f"select.n_clusters = {n_clusters}: k-means left a cluster empty; ask "
                          "for fewer clusters") from None
    order = np.lexsort(centroids.T[::-1])  # by the first coordinate, then the next
    subsets = []
    for rank, c in enumerate(order):
        members = labels == c
        subsets.append(Subset(f"cluster{rank + 1}", members, centroids[c],
                              f"k-means cluster {rank + 1} of {n_clusters}, centroid {_fmt(centroids[c])}"))
    return subsets


def select_points(z: np.ndarray, points, radius: float) -> list[Subset]:
    """For each latent point, the particles within Euclidean distance ``radius`` of it."""
    k = z.shape[1]
    if points is None or len(points) == 0:
        raise ConfigError(f"select.points is required for method 'points' (a list of points, each "
                          f"a list of {k} numbers)")
    if not (np.isfinite(radius) and radius > 0):
        raise ConfigError(f"select.radius = {radius!r}: must be a positive number (latent units)")
    subsets = []
    for i, p in enumerate(points):
        c = _vector(p, k, f"select.points[{i}]")
        inside = np.linalg.norm(z - c, axis=1) <= radius
        subsets.append(Subset(f"point{i + 1}", inside, c,
                              f"within {radius:g} of {_fmt(c)}"))
    return subsets


def select_drawn(z: np.ndarray, drawn: list[DrawnSubset]) -> list[Subset]:
    """The subsets of an explorer selection (already checked against ``z``), in file order."""
    subsets = []
    for d in drawn:
        members = np.zeros(len(z), bool)
        members[d.indices] = True
        kinds = sorted({str(r.get("kind", "?")) for r in d.regions if isinstance(r, dict)})
        how = f"{len(d.regions)} {'/'.join(kinds)} region(s)" if kinds else "a list of particles"
        subsets.append(Subset(d.name, members, z[members].mean(axis=0),
                              f"drawn in the latent explorer ({how})"))
    return subsets


def define_subsets(z: np.ndarray, method: str, *, n_clusters: int = 3, center=None,
                   half_widths=None, axis: int = 1, percentile_low: float = 75.0,
                   percentile_high: float = 100.0, points=None, radius: float = 0.3,
                   seed: int = 0, drawn: list[DrawnSubset] | None = None) -> list[Subset]:
    """The subsets ``method`` defines (see the module docstring); each must hold a particle.
    ``drawn``: the subsets of a selection file (method ``file``).

    Raises :class:`ConfigError` naming the ``select.*`` key for a bad parameter or an empty
    subset.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        raise ConfigError(f"latents must be a non-empty (N, K) array, got shape {z.shape}")
    check_parameters(method, z.shape[1], n_clusters=n_clusters, center=center,
                     half_widths=half_widths, axis=axis, percentile_low=percentile_low,
                     percentile_high=percentile_high, points=points, radius=radius,
                     n_particles=len(z))
    if method == "box":
        subsets = [select_box(z, center, half_widths)]
    elif method == "ellipse":
        subsets = [select_ellipse(z, center, half_widths)]
    elif method == "percentile":
        subsets = [select_percentile(z, axis, percentile_low, percentile_high)]
    elif method == "kmeans":
        subsets = select_kmeans(z, n_clusters, seed)
    elif method == "points":
        subsets = select_points(z, points, radius)
    elif method == "file":
        if not drawn:
            raise ConfigError("select.selection_file is required for method 'file' (a "
                              "selection.json saved from the latent explorer)")
        subsets = select_drawn(z, drawn)
    else:
        raise ConfigError(f"select.method = {method!r}: must be one of {', '.join(METHODS)}")
    for s in subsets:
        if not s.members.any():
            raise ConfigError(f"select: {s.name} ({s.description}) holds no particle (latents "
                              f"span {_fmt(z.min(0))} … {_fmt(z.max(0))}); widen or move the "
                              "region")
    return subsets


def check_parameters(method: str, latent_dim: int, *, n_clusters: int = 3, center=None,
                     half_widths=None, axis: int = 1, percentile_low: float = 75.0,
                     percentile_high: float = 100.0, points=None, radius: float = 0.3,
                     n_particles: int | None = None) -> None:
    """Raise :class:`ConfigError` naming the ``select.*`` key that ``method`` would refuse in a
    ``latent_dim``-dimensional latent space — without the latents, so the workflow checks a
    configuration before any job runs (``n_particles``, when known, bounds ``n_clusters``)."""
    k = latent_dim
    if method not in METHODS:
        raise ConfigError(f"select.method = {method!r}: must be one of {', '.join(METHODS)}")
    if method in ("box", "ellipse"):
        _vector(center, k, "select.center")
        _vector(half_widths, k, "select.half_widths", positive=True, repeat=True)
    elif method == "percentile":
        if not (isinstance(axis, (int, np.integer)) and 1 <= axis <= k):
            raise ConfigError(f"select.axis = {axis!r}: must be a latent dimension 1…{k}")
        if not 0.0 <= percentile_low < percentile_high <= 100.0:
            raise ConfigError(f"select.percentile_low/high = {percentile_low!r}, "
                              f"{percentile_high!r}: need 0 ≤ low < high ≤ 100")
    elif method == "kmeans":
        top = n_particles if n_particles is not None else np.inf
        if not (isinstance(n_clusters, (int, np.integer)) and 1 <= n_clusters <= top):
            bound = f"1…{n_particles} (the number of particles)" if n_particles else "≥ 1"
            raise ConfigError(f"select.n_clusters = {n_clusters!r}: must be an integer {bound}")
    elif method == "points":
        if points is None or len(points) == 0:
            raise ConfigError(f"select.points is required for method 'points' (a list of "
                              f"points, each a list of {k} numbers)")
        for i, p in enumerate(points):
            _vector(p, k, f"select.points[{i}]")
        if not (isinstance(radius, (int, float)) and np.isfinite(radius) and radius > 0):
            raise ConfigError(f"select.radius = {radius!r}: must be a positive number "
                              "(latent units)")


def subset_names(method: str, n_clusters: int = 3, n_points: int = 0,
                 drawn_names=()) -> list[str]:
    """The names :func:`define_subsets` gives, known before it runs (for workflow outputs);
    ``drawn_names``: the subset names of the selection file (method ``file``)."""
    if method == "file":
        return list(drawn_names)
    if method == "kmeans":
        return [f"cluster{i + 1}" for i in range(n_clusters)]
    if method == "points":
        return [f"point{i + 1}" for i in range(n_points)]
    return ["region"]

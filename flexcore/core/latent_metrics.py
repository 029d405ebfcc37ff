"""How well latents recover a known motion coordinate: rank correlation, kNN R², and the
amplitude of the motion that maps generated along the latents span.

All functions take plain arrays: latents ``z (N, K)``, the true coordinate ``t (N,)`` of
each particle (in [-1, 1] for ``flexcore simulate`` data), maps ``[z, y, x]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import spearmanr


def _as_2d(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return z[:, None] if z.ndim == 1 else z


def best_spearman(z, t) -> tuple[float, list[float]]:
    """Best |Spearman ρ| of a latent dimension with ``t``, and ``|ρ|`` of every dimension
    (a constant dimension counts as 0)."""
    z, t = _as_2d(z), np.asarray(t, dtype=np.float64)
    rho = []
    for k in range(z.shape[1]):
        r = spearmanr(z[:, k], t).statistic if np.ptp(z[:, k]) > 0 else 0.0
        rho.append(abs(float(r)) if np.isfinite(r) else 0.0)
    return max(rho), rho


def knn_r2(z, t, k: int = 20, folds: int = 5, seed: int = 0) -> float:
    """R² of ``t`` predicted from ``z`` by k-nearest-neighbour regression, out of fold.

    The particles are split at random (``seed``) into ``folds`` folds; each fold's ``t`` is
    predicted as the mean ``t`` of its ``k`` nearest neighbours among the other folds, in
    latent space with every dimension scaled to unit standard deviation (so the score does not
    depend on the latents' units). ``R² = 1 − Σ(t − t̂)² / Σ(t − mean t)²``: 1 for latents
    that determine ``t``, about 0 (slightly below) for latents unrelated to it.
    """
    z, t = _as_2d(z), np.asarray(t, dtype=np.float64)
    n = len(t)
    if n < 2 * folds:
        raise ValueError(f"need at least {2 * folds} particles for {folds}-fold kNN R², got {n}")
    sd = z.std(axis=0)
    z = (z - z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    order = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        kk = min(k, len(train))
        _, nb = cKDTree(z[train]).query(z[test], k=kk)
        pred[test] = t[train][np.asarray(nb).reshape(len(test), kk)].mean(axis=1)
    return float(1.0 - ((t - pred) ** 2).sum() / ((t - t.mean()) ** 2).sum())


def best_direction(z, t) -> np.ndarray:
    """Unit vector ``(K,)`` in latent space along which ``t`` grows: the least-squares linear
    fit of ``t`` on ``z`` (with intercept), normalised."""
    z, t = _as_2d(z), np.asarray(t, dtype=np.float64)
    a = np.concatenate([z - z.mean(axis=0), np.ones((len(z), 1))], axis=1)
    w = np.linalg.lstsq(a, t - t.mean(), rcond=None)[0][:-1]
    norm = np.linalg.norm(w)
    if norm == 0:
        raise ValueError("the latents do not predict the coordinate linearly at all")
    return w / norm


def points_along_direction(z, direction, percentiles) -> tuple[np.ndarray, np.ndarray]:
    """Latent points at ``percentiles`` (0–100) of the particles' projections on the unit
    ``direction``: ``mean z + (q − mean s) · direction`` with ``s = z · direction``.
    Returns the points ``(P, K)`` and the projections' percentiles ``(P,)``."""
    z = _as_2d(z)
    s = z @ direction
    q = np.percentile(s, percentiles)
    centre = z.mean(axis=0) - s.mean() * direction
    return centre[None] + q[:, None] * direction[None], q


def masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two maps inside a soft ``mask`` (weights), each map's masked
    mean removed first (independent of the maps' density scales)."""
    w = mask.ravel() / mask.sum()
    a, b = a.ravel(), b.ravel()
    a = a - (w * a).sum()
    b = b - (w * b).sum()
    return float((w * a * b).sum() / np.sqrt((w * a * a).sum() * (w * b * b).sum()))


def match_coordinates(maps, true_maps, true_coords, mask) -> tuple[np.ndarray, np.ndarray]:
    """For each map in ``maps (P, D, D, D)``, the true coordinate (from ``true_coords (M,)``)
    whose true map in ``true_maps (M, D, D, D)`` correlates best with it inside ``mask``.
    Returns the matched coordinates ``(P,)`` and the correlations ``(P, M)``."""
    corr = np.array([[masked_correlation(m, g, mask) for g in true_maps] for m in maps])
    return np.asarray(true_coords, dtype=np.float64)[corr.argmax(axis=1)], corr


def amplitude_recovery(generate: Callable[[np.ndarray], np.ndarray], z, t, true_maps,
                       true_coords, mask, percentiles=(1, 5, 10, 25, 50, 75, 90, 95, 99),
                       window: float = 1.0) -> dict:
    """How much of the true motion maps generated along the latents span.

    ``generate(point (K,))`` returns the map at a latent point. Maps are generated at the
    ``percentiles`` of the latents along :func:`best_direction` and each is matched to the
    true coordinate whose true map fits it best (:func:`match_coordinates`). Also reported,
    for each percentile, the mean true ``t`` of the particles whose projection lies within
    ``window`` percent (in rank) of it: what the latents say is there.

    Returns ``{"percentiles", "points", "matched", "particles_t", "matched_range",
    "true_range", "fraction", "end_errors"}``: ``matched_range`` is the span of the matched
    coordinates, ``fraction`` its ratio to the true extremes' span, ``end_errors`` the
    distances of the lowest and highest matched coordinates from the true extremes, as a
    fraction of the true span.
    """
    z, t = _as_2d(z), np.asarray(t, dtype=np.float64)
    direction = best_direction(z, t)
    points, q = points_along_direction(z, direction, percentiles)
    maps = np.stack([generate(p.astype(np.float32)) for p in points])
    matched, _ = match_coordinates(maps, true_maps, true_coords, mask)
    rank = np.argsort(np.argsort(z @ direction)) / max(len(t) - 1, 1) * 100.0
    particles_t = [float(t[np.abs(rank - p) <= window].mean()) if np.any(np.abs(rank - p) <= window)
                   else float("nan") for p in percentiles]
    lo, hi = float(np.min(true_coords)), float(np.max(true_coords))
    span = hi - lo
    return {"percentiles": list(percentiles), "direction": direction.tolist(),
            "points": points.tolist(), "matched": matched.tolist(), "particles_t": particles_t,
            "matched_range": [float(matched.min()), float(matched.max())],
            "true_range": [lo, hi], "fraction": float(np.ptp(matched) / span),
            "end_errors": [float((matched.min() - lo) / span), float((hi - matched.max()) / span)]}


def state_recovery(generate: Callable[[np.ndarray], np.ndarray], z, t, true_maps, true_coords,
                   mask, n_states: int = 10) -> dict:
    """Which true states maps generated at the true states' latents show.

    The particles are binned by true ``t`` into ``n_states`` equal bins over the true
    coordinates' range; the map generated at each bin's median latent is matched to a true
    coordinate (:func:`match_coordinates`). Returns ``{"centres", "n_particles", "matched",
    "fraction", "spearman"}``: ``fraction`` is the matched coordinates' span over the bin
    centres' span, ``spearman`` the rank correlation of matched with true centres (1: in
    order). Bins with fewer than 5 particles are left out.
    """
    z, t = _as_2d(z), np.asarray(t, dtype=np.float64)
    edges = np.linspace(np.min(true_coords), np.max(true_coords), n_states + 1)
    centres, counts, points = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (t >= lo) & (t <= hi)
        if inside.sum() >= 5:
            centres.append(0.5 * (lo + hi))
            counts.append(int(inside.sum()))
            points.append(np.median(z[inside], axis=0))
    if len(centres) < 2:
        raise ValueError("fewer than two true states have 5 particles")
    maps = np.stack([generate(p.astype(np.float32)) for p in points])
    matched, _ = match_coordinates(maps, true_maps, true_coords, mask)
    rho = spearmanr(centres, matched).statistic if np.ptp(matched) > 0 else 0.0
    return {"centres": [float(c) for c in centres], "n_particles": counts,
            "matched": matched.tolist(), "fraction": float(np.ptp(matched) / np.ptp(centres)),
            "spearman": float(rho)}

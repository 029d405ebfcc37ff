"""L-BFGS for convex quadratic objectives, with the exact line search of a quadratic.

The reconstruction objective ``f(x) = ½ xᵀHx − bᵀx + c`` is quadratic in the map, so along
any direction ``d`` the optimal step is ``α* = −gᵀd / dᵀHd`` and the decrease is exactly
``(gᵀd)² / (2 dᵀHd)``. One extra pass that evaluates the curvature ``dᵀHd`` (a forward
projection of ``d``, no images needed) replaces the Wolfe line search of general L-BFGS.

Each iteration: (1) the two-loop recursion (Nocedal & Wright, *Numerical Optimization*,
Algorithm 7.4) turns the gradient into a direction using the last ``m`` pairs
``s = x_{k+1} − x_k``, ``y = g_{k+1} − g_k`` and the initial scaling ``γ = sᵀy / yᵀy``;
(2) a direction that is not a descent direction (``gᵀd ≥ 0``, or non-positive curvature)
is replaced by steepest descent ``d = −g`` and the history is cleared; (3) exact step;
(4) the objective and gradient are *measured* at the new point. A measured increase (only
float rounding can cause one) rejects the step, clears the history and retries with
steepest descent; if that does not decrease either, the solver stops at the best point.
So the objective never increases and more iterations never give a worse result.

Vectors are flat tensors of any device; dot products are accumulated in float64.

The solver's state after every accepted iteration (point, objective, gradient, curvature
pairs, record) can be handed to a callback and given back to continue a run that was
interrupted: the continued run computes exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ...core.utils.logging import get_logger
from ...core.utils.progress import format_eta

log = get_logger("flexcore.recon.lbfgs")


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """``aᵀb`` in float64 as a Python float."""
    return float(torch.dot(a.reshape(-1).double(), b.reshape(-1).double()))


@dataclass
class LbfgsResult:
    """Solution and per-iteration record of :func:`minimize_quadratic`.

    ``history`` holds one dict per iteration (``iteration`` 0 is the start point) with
    ``objective``, ``grad_norm``, ``step`` (α), ``step_norm`` (‖αd‖), ``direction``
    (``"lbfgs"``, ``"steepest"`` or ``"start"``) and ``seconds`` since the start.
    """

    x: torch.Tensor
    objective: float
    history: list[dict] = field(default_factory=list)
    stopped: str = "iterations"


def _clear(*lists: list, first_only: bool = False) -> None:
    for lst in lists:
        if first_only:
            lst.pop(0)
        else:
            lst.clear()


def two_loop_direction(g: torch.Tensor, s_hist: list[torch.Tensor], y_hist: list[torch.Tensor],
                       rho_hist: list[float]) -> torch.Tensor:
    """L-BFGS direction ``d = −H_k g`` by the two-loop recursion (oldest pair first in the
    lists). With an empty history ``d = −g``."""
    q = g.clone()
    alphas = []
    for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
        a = rho * dot(s, q)
        alphas.append(a)
        q.add_(y, alpha=-a)
    if s_hist:
        s, y = s_hist[-1], y_hist[-1]
        q.mul_(dot(s, y) / dot(y, y))
    for (s, y, rho), a in zip(zip(s_hist, y_hist, rho_hist), reversed(alphas)):
        b = rho * dot(y, q)
        q.add_(s, alpha=a - b)
    return q.neg_()


@dataclass
class _Solver:
    """The running state of :func:`minimize_quadratic`: point, objective, gradient,
    curvature pairs (oldest first) and the record of accepted iterations."""

    x: torch.Tensor
    f: float
    g: torch.Tensor
    g0_norm: float
    history: list[dict]
    s: list[torch.Tensor]
    y: list[torch.Tensor]
    rho: list[float]
    it: int
    t0: float

    @classmethod
    def start(cls, x0: torch.Tensor, value_and_grad, label: str) -> _Solver:
        t0 = time.time()
        x = x0.detach().clone()
        f, g = value_and_grad(x)
        g0_norm = math.sqrt(dot(g, g))
        history = [{"iteration": 0, "objective": f, "grad_norm": g0_norm, "step": 0.0,
                    "step_norm": 0.0, "direction": "start", "seconds": time.time() - t0}]
        log.info("%siteration 0: objective %.8g, |grad| %.4g", label, f, g0_norm)
        return cls(x, f, g, g0_norm, history, [], [], [], 0, t0)

    @classmethod
    def resume(cls, state: dict, label: str) -> _Solver:
        history = list(state["history"])
        solver = cls(state["x"], state["objective"], state["grad"], state["g0_norm"], history,
                     list(state["s"]), list(state["y"]), list(state["rho"]),
                     int(state["iteration"]), time.time() - history[-1]["seconds"])
        log.info("%scontinuing an interrupted solve at iteration %d (objective %.8g)", label,
                 solver.it, solver.f)
        return solver

    def snapshot(self) -> dict:
        return {"x": self.x, "objective": self.f, "grad": self.g, "g0_norm": self.g0_norm,
                "history": self.history, "s": self.s, "y": self.y, "rho": self.rho,
                "iteration": self.it}

    def forget(self) -> None:
        """Clear the curvature pairs (the next direction is steepest descent)."""
        _clear(self.s, self.y, self.rho)

    def direction(self, curvature) -> tuple[torch.Tensor, str, float, float] | str:
        """``(d, kind, gᵀd, dᵀHd)`` of the next step, or why the solver must stop: an
        L-BFGS direction, or steepest descent where that is not a descent direction (or
        has no curvature), clearing the pairs."""
        g_norm = math.sqrt(dot(self.g, self.g))
        kind = "lbfgs" if self.s else "steepest"
        d = two_loop_direction(self.g, self.s, self.y, self.rho)
        gd = dot(self.g, d)
        dhd = curvature(d) if gd < 0 else -1.0
        if gd >= 0 or not dhd > 0:
            self.forget()
            kind, d, gd = "steepest", -self.g, -g_norm**2
            dhd = curvature(d)
            if not dhd > 0:
                return "zero curvature along the gradient"
        return d, kind, gd, dhd

    def accept(self, x_new, f_new, g_new, alpha: float, d, kind: str, history_size: int) -> dict:
        """Move to ``x_new``, keep the curvature pair when ``sᵀy > 0`` (so the
        inverse-Hessian estimate stays positive definite), record the iteration."""
        s, y = x_new - self.x, g_new - self.g
        sy = dot(s, y)
        if sy > 0:
            self.s.append(s)
            self.y.append(y)
            self.rho.append(1.0 / sy)
            if len(self.s) > history_size:
                _clear(self.s, self.y, self.rho, first_only=True)
        self.x, self.f, self.g = x_new, f_new, g_new
        self.it += 1
        rec = {"iteration": self.it, "objective": f_new, "grad_norm": math.sqrt(dot(g_new, g_new)),
               "step": alpha, "step_norm": abs(alpha) * math.sqrt(dot(d, d)), "direction": kind,
               "seconds": time.time() - self.t0}
        self.history.append(rec)
        return rec


def minimize_quadratic(
    x0: torch.Tensor,
    value_and_grad: Callable[[torch.Tensor], tuple[float, torch.Tensor]],
    curvature: Callable[[torch.Tensor], float],
    iterations: int = 20,
    history_size: int = 8,
    label: str = "",
    grad_tol: float = 0.0,
    state: dict | None = None,
    on_iteration: Callable[[dict], None] | None = None,
) -> LbfgsResult:
    """Minimise a convex quadratic by L-BFGS with exact line search.

    Parameters
    ----------
    x0 : ``(M,)`` start point (not modified).
    value_and_grad : ``x ↦ (f(x), ∇f(x))``, ``f`` a float, the gradient shaped like ``x``.
    curvature : ``d ↦ dᵀHd`` (≥ 0 for a convex quadratic).
    iterations : number of L-BFGS steps (0 returns the start point with its objective).
    history_size : ``m``, the number of ``(s, y)`` pairs kept (``2m`` vectors of ``M``).
    label : prefix of the progress lines.
    grad_tol : stop early when ``‖g‖ ≤ grad_tol · ‖g₀‖`` (0 = never).
    state : a state given to ``on_iteration`` by an earlier, interrupted run with the same
        objective: continue from it (``x0`` is then not evaluated).
    on_iteration : called with the solver's state (a dict of tensors and floats) after
        the start point and after every accepted iteration, e.g. to save it.

    Returns
    -------
    :class:`LbfgsResult` with the best point found (the last accepted one).
    """
    if iterations < 0:
        raise ValueError(f"iterations must be ≥ 0, got {iterations}")
    if history_size < 1:
        raise ValueError(f"history_size must be ≥ 1, got {history_size}")
    sv = _Solver.start(x0, value_and_grad, label) if state is None else _Solver.resume(state, label)
    result = LbfgsResult(x=sv.x, objective=sv.f, history=sv.history)
    if on_iteration is not None and state is None:
        on_iteration(sv.snapshot())
    first_it, t_first = sv.it, time.time()
    while sv.it < iterations:
        g_norm = math.sqrt(dot(sv.g, sv.g))
        if g_norm == 0.0 or (grad_tol > 0 and g_norm <= grad_tol * sv.g0_norm):
            result.stopped = "gradient tolerance"
            break
        step = sv.direction(curvature)
        if isinstance(step, str):
            result.stopped = step
            break
        d, kind, gd, dhd = step
        alpha = -gd / dhd
        x_new = sv.x + alpha * d
        f_new, g_new = value_and_grad(x_new)
        if not f_new < sv.f:
            if kind == "steepest":
                result.stopped = "no further decrease (float precision)"
                log.info("%siteration %d: a steepest-descent step does not decrease the objective "
                         "(%.10g → %.10g); stopping at the best point", label, sv.it + 1, sv.f, f_new)
                break
            log.info("%siteration %d: L-BFGS step raised the objective (%.10g → %.10g); "
                     "retrying with steepest descent", label, sv.it + 1, sv.f, f_new)
            sv.forget()
            continue
        rec = sv.accept(x_new, f_new, g_new, alpha, d, kind, history_size)
        per_it = (time.time() - t_first) / (sv.it - first_it)
        log.info("%siteration %d/%d: objective %.8g (Δ %.4g), |grad| %.4g, step %.4g (%s); "
                 "ETA %s", label, sv.it, iterations, sv.f,
                 sv.f - result.history[-2]["objective"], rec["grad_norm"], alpha, kind,
                 format_eta(per_it * (iterations - sv.it)))
        if on_iteration is not None:
            on_iteration(sv.snapshot())
    result.x, result.objective = sv.x, sv.f
    return result

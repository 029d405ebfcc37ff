"""L-BFGS with exact line search on random convex quadratics (the solver of the
flexible reconstruction): convergence, monotone objective, and the descent guards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexcore.stages.reconstruct.lbfgs import minimize_quadratic, two_loop_direction


def random_quadratic(n: int, condition: float, seed: int):
    """``f(x) = ½xᵀHx − bᵀx`` with eigenvalues log-spaced in ``[1, condition]``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    h = (q * torch.logspace(0, np.log10(condition), n, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)

    def f(x):
        return float(0.5 * x @ h @ x - b @ x)

    return h, b, f


def test_converges_to_the_solution_of_a_random_quadratic():
    h, b, f = random_quadratic(60, 100.0, seed=0)
    res = minimize_quadratic(torch.zeros(60, dtype=torch.float64), lambda x: (f(x), h @ x - b),
                             lambda d: float(d @ h @ d), iterations=80)
    x_star = torch.linalg.solve(h, b)
    assert torch.allclose(res.x, x_star, atol=1e-6)
    assert res.objective == pytest.approx(f(x_star), abs=1e-9)


def test_objective_is_logged_and_never_increases():
    h, b, f = random_quadratic(80, 1e3, seed=1)
    res = minimize_quadratic(torch.zeros(80, dtype=torch.float64), lambda x: (f(x), h @ x - b),
                             lambda d: float(d @ h @ d), iterations=25)
    objectives = [r["objective"] for r in res.history]
    assert len(res.history) == 26 and res.history[0]["direction"] == "start"
    assert all(b_ <= a for a, b_ in zip(objectives, objectives[1:]))
    for r in res.history[1:]:
        assert r["step"] > 0 and r["grad_norm"] >= 0 and r["direction"] in ("lbfgs", "steepest")


def test_more_iterations_never_give_a_worse_objective():
    h, b, f = random_quadratic(50, 300.0, seed=2)
    finals = [minimize_quadratic(torch.zeros(50, dtype=torch.float64),
                                 lambda x: (f(x), h @ x - b), lambda d: float(d @ h @ d),
                                 iterations=it).objective for it in (0, 1, 2, 5, 10, 20, 40)]
    assert finals[0] == 0.0
    assert all(b_ <= a for a, b_ in zip(finals, finals[1:]))


def test_first_step_is_the_exact_steepest_descent_step():
    h, b, f = random_quadratic(20, 10.0, seed=3)
    res = minimize_quadratic(torch.zeros(20, dtype=torch.float64), lambda x: (f(x), h @ x - b),
                             lambda d: float(d @ h @ d), iterations=1)
    g = -b  # gradient at 0
    alpha = float(g @ g / (g @ h @ g))
    assert res.history[1]["step"] == pytest.approx(alpha, rel=1e-12)
    assert res.objective == pytest.approx(f(-alpha * g), rel=1e-12)


def test_two_loop_direction_matches_the_bfgs_inverse_for_one_pair():
    gen = torch.Generator().manual_seed(4)
    g, s = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen,
                                                                          dtype=torch.float64)
    y = s + 0.1 * torch.randn(6, generator=gen, dtype=torch.float64)
    assert torch.equal(two_loop_direction(g, [], [], []), -g)
    rho = 1.0 / float(s @ y)
    gamma = float(s @ y / (y @ y))
    eye = torch.eye(6, dtype=torch.float64)
    v = eye - rho * torch.outer(y, s)
    h_inv = v.T @ (gamma * eye) @ v + rho * torch.outer(s, s)
    assert torch.allclose(two_loop_direction(g, [s], [y], [rho]), -h_inv @ g, atol=1e-12)


def test_non_descent_direction_falls_back_to_steepest_descent():
    """A curvature oracle that rejects every L-BFGS direction (returns −1) forces the
    steepest-descent fallback; the objective still decreases at every step."""
    h, b, f = random_quadratic(30, 50.0, seed=5)
    state = {}

    def value_and_grad(x):
        state["g"] = h @ x - b
        return f(x), state["g"]

    def curvature(d):
        return float(d @ h @ d) if torch.allclose(d, -state["g"]) else -1.0

    res = minimize_quadratic(torch.zeros(30, dtype=torch.float64), value_and_grad, curvature,
                             iterations=8)
    assert [r["direction"] for r in res.history[1:]] == ["steepest"] * 8
    objectives = [r["objective"] for r in res.history]
    assert all(b_ < a for a, b_ in zip(objectives, objectives[1:]))


def test_a_measured_increase_is_rejected_and_retried():
    """Rounding can make a measured objective exceed the last one; such a step is rejected,
    the history cleared, and a steepest-descent step taken instead."""
    h, b, f = random_quadratic(30, 50.0, seed=6)
    calls = {"n": 0}

    def value_and_grad(x):
        calls["n"] += 1
        bump = 1e3 if calls["n"] == 4 else 0.0  # the 3rd step's evaluation looks worse
        return f(x) + bump, h @ x - b

    res = minimize_quadratic(torch.zeros(30, dtype=torch.float64), value_and_grad,
                             lambda d: float(d @ h @ d), iterations=5)
    objectives = [r["objective"] for r in res.history]
    assert len(res.history) == 6
    assert all(b_ < a for a, b_ in zip(objectives, objectives[1:]))
    assert res.history[3]["direction"] == "steepest"


def test_bad_arguments():
    with pytest.raises(ValueError, match="iterations"):
        minimize_quadratic(torch.zeros(3), lambda x: (0.0, x), lambda d: 1.0, iterations=-1)
    with pytest.raises(ValueError, match="history_size"):
        minimize_quadratic(torch.zeros(3), lambda x: (0.0, x), lambda d: 1.0, history_size=0)

"""flexcore's Adam against torch.optim.Adam: the same numbers, the same state dicts, and no
torch._dynamo import."""

import subprocess
import sys

import pytest
import torch

from flexcore.stages.train.adam import Adam


def _problem(seed):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(7, 5, generator=g).requires_grad_(), torch.randn(5, generator=g).requires_grad_(),
              torch.randn(3, 4, 4, generator=g).requires_grad_()]
    targets = [torch.randn(p.shape, generator=g) for p in params]
    return params, targets


def _steps(opt, params, targets, n, lrs, skip_last_from=None):
    for i in range(n):
        for group in opt.param_groups:
            group["lr"] = lrs[i % len(lrs)]
        opt.zero_grad(set_to_none=True)
        live = params if skip_last_from is None or i < skip_last_from else params[:-1]
        loss = sum(((p * p.abs() - t) ** 2).sum() for p, t in zip(live, targets))
        loss.backward()
        opt.step()


def test_the_same_steps_as_torch_adam_bit_for_bit():
    mine, targets = _problem(0)
    theirs = [p.detach().clone().requires_grad_() for p in mine]
    a = Adam(mine, lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    b = torch.optim.Adam(theirs, lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    # changing learning rates, and one parameter without a gradient in the later steps
    _steps(a, mine, targets, 25, [0.05, 0.01, 0.003], skip_last_from=15)
    _steps(b, theirs, targets, 25, [0.05, 0.01, 0.003], skip_last_from=15)
    for p, q in zip(mine, theirs):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert not torch.equal(mine[0], _problem(0)[0][0])  # it moved


@pytest.mark.parametrize("direction", ["torch to flexcore", "flexcore to torch"])
def test_state_dicts_move_between_the_two_and_the_run_continues_identically(direction):
    ref, targets = _problem(1)
    first = torch.optim.Adam(ref, lr=0.02) if direction == "torch to flexcore" else Adam(ref, lr=0.02)
    _steps(first, ref, targets, 10, [0.02])
    saved = first.state_dict()
    resumed = [p.detach().clone().requires_grad_() for p in ref]
    second = Adam(resumed, lr=0.5) if direction == "torch to flexcore" else torch.optim.Adam(resumed, lr=0.5)
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == 0.02
    _steps(first, ref, targets, 10, [0.02, 0.004])
    _steps(second, resumed, targets, 10, [0.02, 0.004])
    for p, q in zip(ref, resumed):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_state_of_other_parameters_is_refused():
    params, _ = _problem(2)
    saved = torch.optim.Adam(params[:2]).state_dict()
    with pytest.raises(ValueError, match="does not match these parameters"):
        Adam(params).load_state_dict(saved)
    amsgrad = torch.optim.Adam(params, amsgrad=True).state_dict()
    with pytest.raises(ValueError, match="amsgrad"):
        Adam(params).load_state_dict(amsgrad)


def test_a_training_step_imports_no_dynamo():
    code = ("import sys, torch\n"
            "from flexcore.stages.train.adam import Adam\n"
            "p = torch.zeros(4, requires_grad=True)\n"
            "opt = Adam([p], lr=0.1)\n"
            "(p - 1).pow(2).sum().backward(); opt.step(); opt.zero_grad()\n"
            "opt.load_state_dict(opt.state_dict())\n"
            "assert float(p[0]) > 0.05\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

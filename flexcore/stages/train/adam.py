"""Adam, step for step as ``torch.optim.Adam`` computes it on the CPU, without torch.optim.

Every ``torch.optim`` optimiser imports ``torch._dynamo`` on its first use (its methods are
wrapped in ``torch._disable_dynamo``): 2 s on an idle 2-core machine and 4-8 s on a busy
one, in every process that trains. Training is one such process per rule, per rank and per
test. This class does the same arithmetic as torch's single-tensor Adam (the CPU default:
no weight decay, no AMSGrad), reads and writes torch's state-dict layout, so checkpoints
move between the two either way, and imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# torch's param-group keys, so a state dict written here loads into torch.optim.Adam
_TORCH_GROUP_KEYS = {"weight_decay": 0, "amsgrad": False, "maximize": False, "foreach": None,
                     "capturable": False, "differentiable": False, "fused": None,
                     "decoupled_weight_decay": False}


class Adam:
    """``torch.optim.Adam(params, lr, betas, eps)``: ``param_groups``, ``zero_grad``,
    ``step``, ``state_dict`` and ``load_state_dict`` behave as torch's do."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        params = list(params)
        if not params:
            raise ValueError("Adam got an empty parameter list")
        self.param_groups = [{"params": params, "lr": lr, "betas": tuple(betas), "eps": eps}]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                st = self.state.get(p)
                if st is None:
                    st = self.state[p] = {
                        "step": torch.tensor(0.0),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
                st["step"] += 1
                exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad.conj(), value=1 - beta2)
                step = st["step"].item()
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict:
        """torch's layout: parameters numbered in group order, state keyed by number."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            numbers = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                numbers.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           **_TORCH_GROUP_KEYS, "params": numbers})
        state = {index[id(p)]: {k: v.clone() for k, v in st.items()}
                 for p, st in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads this class's or ``torch.optim.Adam``'s state dict (same parameters)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError("the optimiser state does not match these parameters "
                             f"({[len(g['params']) for g in groups]} saved, "
                             f"{[len(g['params']) for g in self.param_groups]} here)")
        for unsupported in ("amsgrad", "maximize", "weight_decay"):
            if any(g.get(unsupported) for g in groups):
                raise ValueError(f"the optimiser state uses Adam's {unsupported}, which this "
                                 "optimiser does not do")
        self.state = {}
        for g, mine in zip(groups, self.param_groups):
            mine.update({k: g[k] for k in ("lr", "betas", "eps")})
            mine["betas"] = tuple(mine["betas"])
            for number, p in zip(g["params"], mine["params"]):
                saved = state_dict["state"].get(number)
                if saved is None:
                    continue
                self.state[p] = {
                    "step": torch.as_tensor(saved["step"], dtype=torch.float32).detach().clone().cpu(),
                    "exp_avg": saved["exp_avg"].detach().to(p.device, p.dtype).clone(),
                    "exp_avg_sq": saved["exp_avg_sq"].detach().to(p.device, p.dtype).clone(),
                }

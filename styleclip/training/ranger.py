"""Ranger: RAdam + Lookahead + gradient centralisation, the optimizer of the StyleCLIP mapper (SPEC 2.3).

Written from the formulas (Liu et al. 2020 RAdam; Zhang et al. 2019 Lookahead; Yong et al. 2020 GC):
- GC: for parameters with dim > 1 the gradient minus its mean over all dims but the first.
- RAdam with rho_inf = 2/(1-beta2) - 1, rho_t = rho_inf - 2 t beta2^t / (1-beta2^t). If rho_t > threshold (5)
  p -= lr * r_t * sqrt(1-beta2^t) / (1-beta1^t) * m / (sqrt(v) + eps), with the rectification
  r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t)); else p -= lr / (1-beta1^t) * m.
- Lookahead: every k steps slow += alpha * (fast - slow); fast = slow. Slow weights start as the initial
  parameters and live in the optimizer state, so `state_dict()` carries them (exact resume).
"""
from __future__ import annotations

import math

import torch


class Ranger(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, *, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, k: int = 6, alpha: float = 0.5, sma_threshold: float = 5.0,
                 use_gc: bool = True):
        if lr <= 0 or eps <= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1:
            raise ValueError(f"invalid Ranger settings lr={lr}, betas={betas}, eps={eps}")
        if k < 1 or not 0 < alpha <= 1:
            raise ValueError(f"invalid Lookahead settings k={k}, alpha={alpha}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, k=k, alpha=alpha,
                        sma_threshold=sma_threshold, use_gc=use_gc)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float()
                if grad.is_sparse:
                    raise RuntimeError("Ranger does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                    state["slow_buffer"] = p.detach().float().clone()
                if group["use_gc"] and grad.ndim > 1:
                    grad = grad - grad.mean(dim=tuple(range(1, grad.ndim)), keepdim=True)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m.mul_(beta1).add_(grad, alpha=1 - beta1)

                p32 = p.detach().float()
                if group["weight_decay"] != 0:
                    p32.add_(p32, alpha=-group["weight_decay"] * lr)
                beta2_t = beta2 ** t
                rho_inf = 2 / (1 - beta2) - 1
                rho_t = rho_inf - 2 * t * beta2_t / (1 - beta2_t)
                if rho_t > group["sma_threshold"]:
                    rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                    step_size = rect * math.sqrt(1 - beta2_t) / (1 - beta1 ** t)
                    p32.addcdiv_(m, v.sqrt().add_(eps), value=-step_size * lr)
                else:
                    p32.add_(m, alpha=-lr / (1 - beta1 ** t))
                if t % group["k"] == 0:
                    slow = state["slow_buffer"]
                    slow.add_(p32 - slow, alpha=group["alpha"])
                    p32.copy_(slow)
                p.copy_(p32)
        return loss

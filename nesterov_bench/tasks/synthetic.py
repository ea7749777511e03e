"""Tasks on generated data: the first article's linear regression and a quadratic of known spectrum."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Data, Optimum, Selection, Split, Task, batched, register


@register
class LinReg(Task):
    """1-D linear regression, y = w x + b + N(0, noise_std^2), as in the first article.

    The article generated its data with ``make_regression(n=1000, noise=20, random_state=42)``;
    that generator draws x ~ N(0, 1), a coefficient w ~ U(0, 100) and b = 0, which is what this
    does (with torch's RNG, so the numbers differ from sklearn's but the distribution is the same).
    """

    name = "linreg"
    selection = Selection("val", "loss", "min")
    options = {"n_train": int, "n_val": int, "n_test": int, "noise_std": float, "data_seed": int}

    def load_data(self, data_cfg: Mapping[str, Any], device: torch.device) -> Data:
        g = torch.Generator().manual_seed(self.cfg["data_seed"])
        w, b = 100.0 * torch.rand((), generator=g).item(), 0.0

        def draw(n: int) -> Split:
            x = torch.randn(n, 1, generator=g)
            y = w * x[:, 0] + b + self.cfg["noise_std"] * torch.randn(n, generator=g)
            return Split(x.to(device), y.to(device))

        return Data(draw(self.cfg["n_train"]), draw(self.cfg["n_val"]), draw(self.cfg["n_test"]),
                    truth={"w": w, "b": b})

    def build_model(self) -> nn.Module:
        return nn.Linear(1, 1)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output[:, 0], target)

    def member_losses(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output[..., 0], target, reduction="none").mean(-1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int, data: Data) -> dict[str, float]:
        sse = batched(
            lambda x, y: nn.functional.mse_loss(model(x)[:, 0], y, reduction="sum"), split, batch_size
        )
        return {"loss": sse.item() / len(split)}


@register
class Quadratic(Task):
    """Least squares with a prescribed Hessian spectrum.

    f(x) = 1/(2n) ||M x - y||^2 with M = sqrt(n) U diag(sqrt(lambda)) V^T (U, V random orthonormal,
    fixed by ``data_seed``), so the Hessian H = M^T M / n = V diag(lambda) V^T has eigenvalues lambda
    spread over [mu, L], L = kappa mu, both ends included. y = M x_true + noise. The minimiser x* is the
    least-squares solution, and since grad f(x*) = 0, f(x) - f* = 1/2 (x - x*)^T H (x - x*) exactly:
    that is how ``suboptimality`` is computed (no cancellation of two large numbers). A run starts at
    x0 ~ N(0, init_std^2 I) from its seed; ``optimum=zero`` puts x* at 0 (the noisy quadratic model:
    then x0 - x* is isotropic, whatever the problem's eigenvectors).
    """

    name = "quadratic"
    selection = Selection("train", "suboptimality", "min")
    options = {
        "dim": int,
        "rows": int,
        "kappa": float,
        "mu": float,
        "spectrum": str,
        "noise_std": float,
        "data_seed": int,
        "dtype": str,
        "grad_noise": (float, int, type(None)),
        "grad_noise_cov": (str, type(None)),
        "optimum": (str, type(None)),
        "init_std": (float, int, type(None)),
    }

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__({"grad_noise": None, "grad_noise_cov": None, "optimum": None, "init_std": None,
                          **cfg})  # (runs made before them)
        c = self.cfg
        if c["dim"] < 1 or c["rows"] < c["dim"]:
            raise ConfigError(f"task.rows must be >= task.dim >= 1, got rows={c['rows']}, dim={c['dim']}")
        if not (c["kappa"] >= 1 and math.isfinite(c["kappa"])):
            raise ConfigError(f"task.kappa must be a finite number >= 1, got {c['kappa']}")
        if not c["mu"] > 0:
            raise ConfigError(f"task.mu must be > 0, got {c['mu']}")
        if c["spectrum"] not in ("linear", "log"):
            raise ConfigError(f"task.spectrum must be linear or log, got {c['spectrum']!r}")
        if c["dtype"] not in ("float32", "float64"):
            raise ConfigError(f"task.dtype must be float32 or float64, got {c['dtype']!r}")
        if c.get("grad_noise") is not None and not (c["grad_noise"] >= 0 and math.isfinite(c["grad_noise"])):
            raise ConfigError(f"task.grad_noise must be a number >= 0 or null, got {c['grad_noise']}")
        if c.get("grad_noise_cov") not in (None, "hessian", "identity"):
            raise ConfigError(f"task.grad_noise_cov must be hessian or identity, got {c['grad_noise_cov']!r}")
        if c.get("optimum") not in (None, "zero"):
            raise ConfigError(f"task.optimum must be zero or null (drawn), got {c['optimum']!r}")
        if c.get("init_std") is not None and not (c["init_std"] > 0 and math.isfinite(c["init_std"])):
            raise ConfigError(f"task.init_std must be a number > 0 or null, got {c['init_std']}")
        self.dtype = getattr(torch, c["dtype"])
        self.mu = float(c["mu"])
        self.L = float(c["kappa"]) * self.mu

    def eigenvalues(self) -> Tensor:
        d = self.cfg["dim"]
        if self.cfg["spectrum"] == "log":
            return torch.logspace(math.log10(self.mu), math.log10(self.L), d, dtype=torch.float64)
        return torch.linspace(self.mu, self.L, d, dtype=torch.float64)

    def load_data(self, data_cfg: Mapping[str, Any], device: torch.device) -> Data:
        d, n = self.cfg["dim"], self.cfg["rows"]
        g = torch.Generator().manual_seed(self.cfg["data_seed"])
        u, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        lam = self.eigenvalues()
        m = math.sqrt(n) * u @ torch.diag(lam.sqrt()) @ v.T
        x_true = torch.randn(d, generator=g, dtype=torch.float64)
        if self.cfg.get("optimum") == "zero":  # the noisy quadratic model's x* = 0 (and f* = 0)
            x_true = torch.zeros(d, dtype=torch.float64)
        y = m @ x_true + self.cfg["noise_std"] * torch.randn(n, generator=g, dtype=torch.float64)
        x_star = torch.linalg.lstsq(m, y).solution
        optimum = Optimum(x_star=x_star.to(device, self.dtype),
                          hessian=(v @ torch.diag(lam) @ v.T).to(device, self.dtype),
                          f_star=0.5 * torch.mean((m @ x_star - y) ** 2).item())
        sigma = self.cfg.get("grad_noise") or 0.0
        noise = None
        if sigma > 0:  # xi = F z, z ~ N(0, I): covariance sigma^2 H (hessian) or sigma^2 I (identity)
            identity = self.cfg.get("grad_noise_cov") == "identity"
            root = torch.eye(d, dtype=torch.float64) if identity else v @ torch.diag(lam.sqrt()) @ v.T
            noise = sigma * root
        return Data(Split(m.to(device, self.dtype), y.to(device, self.dtype)), optimum=optimum,
                    grad_noise=noise)

    def build_model(self) -> nn.Module:
        model = nn.Linear(self.cfg["dim"], 1, bias=False, dtype=self.dtype)
        with torch.no_grad():  # x0 ~ N(0, I): the seed varies the starting point
            model.weight.normal_(std=self.cfg.get("init_std") or 1.0)
        return model

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return 0.5 * torch.mean((output[:, 0] - target) ** 2)

    def member_losses(self, output: Tensor, target: Tensor) -> Tensor:
        return 0.5 * torch.mean((output[..., 0] - target) ** 2, dim=-1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int, data: Data) -> dict[str, float]:
        sse = batched(lambda x, y: torch.sum((model(x)[:, 0] - y) ** 2), split, batch_size)
        e = model.weight[0] - data.optimum.x_star
        return {
            "loss": 0.5 * sse.item() / len(split),
            "suboptimality": 0.5 * (e @ data.optimum.hessian @ e).item(),
            "dist_to_opt": e.norm().item(),
        }

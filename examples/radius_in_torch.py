"""The certified radius as a torch function: evaluated on the tensor's device, differentiable.

    python examples/radius_in_torch.py [--device cuda]

A training objective that rewards certified radius (MACER, wulff's `--objective macer`) needs R(rho)
inside the autograd graph. Here a single logit is trained so that its probability rho maximises
the Laplace l1 radius minus a penalty on overconfidence, lam / (10 (1 - rho)): the gradient
dR/drho = lam / (1 - rho) (Table A.1) is what `wulff.certified_radius` hands back, and the values
stay sound lower bounds in every dtype.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import wulff
from wulff import distributions as D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    q = D.Laplace(3072, sigma=0.5)

    rho = torch.tensor([0.6, 0.9, 0.99], dtype=torch.float64, device=args.device, requires_grad=True)
    radius = wulff.certified_radius(q, rho, "l1")
    radius.sum().backward()
    print(f"Laplace l1, lam = {q.lam:.4f}, on {radius.device}")
    for r, value, slope in zip(rho.tolist(), radius.tolist(), rho.grad.tolist()):
        print(f"  rho = {r:<5}  R = {value:.6f}  dR/drho = {slope:.4f}  (lam / (1 - rho) = {q.lam / (1 - r):.4f})")

    # float32 and bfloat16 radii are the float64 ones rounded toward zero, never up
    for dtype in (torch.float32, torch.bfloat16):
        narrow = wulff.certified_radius(q, rho.detach().to(dtype), "l1")
        exact = wulff.certified_radius(q, rho.detach().to(dtype).double().cpu().numpy(), "l1")
        assert np.all(narrow.double().cpu().numpy() <= exact)
        values = [round(v, 6) for v in narrow.tolist()]
        print(f"  {str(dtype):15s} {values}  (never above {exact.round(6).tolist()})")

    # ascend R(rho) - lam / (10 (1 - rho)) on one logit, started above 1/2 (where R has a slope): the
    # objective is concave there and its maximum solves lam / (1 - rho) = lam / (10 (1 - rho)^2)
    logit = torch.ones(1, dtype=torch.float64, device=args.device, requires_grad=True)
    optimizer = torch.optim.SGD([logit], lr=2.0)
    for _ in range(500):
        p = torch.sigmoid(logit)
        loss = -(wulff.certified_radius(q, p, "l1") - q.lam / (10 * (1 - p))).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"trained rho = {torch.sigmoid(logit).item():.4f}; the optimum is 0.9")


if __name__ == "__main__":
    main()

"""Cost of certification against the bare forward passes it needs, in the same process.

    python benchmarks/certify.py [--n 100000] [--n0 64] [--batch-size 1000] [--device cuda]
                                 [--distribution Gaussian] [--autocast bf16] [--channels-last]

ResNet-18 (CIFAR variant) on 3x32x32 inputs. ``certify`` draws n0 + n noisy copies, runs them through
the model in batches, counts votes, computes the Clopper-Pearson bound and the radii for l1, l2 and
linf; the baseline is the same number of forward passes on a fixed batch (no noise, no counting).
Target (issue 5): overhead <= 10%, i.e. the printed ratio <= 1.10. On a CPU run use a reduced n.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from wulff.certify import Smoothed
from wulff.train import build_model, named_distribution

INPUT_SHAPE = (3, 32, 32)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--n0", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--distribution", default="Gaussian")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--autocast", choices=("bf16", "fp16"), default=None)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("resnet18", INPUT_SHAPE, 10, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    model.to(device).eval()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.autocast]
    q = named_distribution(args.distribution, 3 * 32 * 32, sigma=args.sigma)
    smoothed = Smoothed(model, q, 10, autocast=amp, channels_last=args.channels_last, seed=0)
    x = torch.rand(INPUT_SHAPE, device=device)
    total = args.n0 + args.n
    batch = torch.rand(args.batch_size, *INPUT_SHAPE, device=device)
    if args.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    sizes = [min(args.batch_size, k - s) for k in (args.n0, args.n) for s in range(0, k, args.batch_size)]

    def bare() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            for size in sizes:
                model(batch[:size])

    def certify() -> None:
        smoothed.certify(x, args.n0, args.n, 0.001, args.batch_size, adversaries=("l1", "l2", "linf"))

    smoothed.certify(x, 8, 16, 0.001, 16)  # warm-up: certificates derived and cached, kernels chosen
    bare()
    bare_times, certify_times = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        bare_times.append(timed(bare, device))
        certify_times.append(timed(certify, device))
    t_bare, t_cert = statistics.median(bare_times), statistics.median(certify_times)
    print(f"device {device} ({torch.get_num_threads()} CPU threads), ResNet-18 on {INPUT_SHAPE}, "
          f"{q.name} noise, n0 = {args.n0}, n = {args.n}, batch {args.batch_size}, "
          f"autocast {args.autocast}, channels_last {args.channels_last}, median of {args.repeats}")
    print(f"bare forward passes : {t_bare:8.3f} s per input  ({total / t_bare:10.0f} samples/s)")
    print(f"certify             : {t_cert:8.3f} s per input  ({total / t_cert:10.0f} samples/s)")
    print(f"ratio certify / bare: {t_cert / t_bare:8.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()

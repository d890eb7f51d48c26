"""Trial throughput on the CPU (1 thread): the quickstart step, populations against single trials, memory.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trial_speed.py [--compile] [--rounds 3]

Everything is measured in one run, paired and interleaved (absolute times are noisy on a shared
machine; the ratios are what to read):

* the quickstart step (N = 100, batch 8, 1 thread): the reference eager step of ``fit`` and, with
  ``--compile``, the same loss under ``torch.compile`` (inductor) with its compile time;
* member-steps per second of populations K = 1, 4, 16 (``ntune.learn.population``) against single trials
  (the step of ``fit``) at N = 100 and N = 1000;
* memory per member at N = 1000 (W, MLPs, their gradients and Adam state, plus the activations autograd
  saves for one step, counted with saved-tensor hooks) and the largest K that fits an 80 GB GPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from ntune.config import NtuneConfig, config_from_dict, load_config
from ntune.learn.loss import l1_coefficient, loss_terms
from ntune.learn.model import PopulationGNN
from ntune.learn.optim import BatchedOptimizer, make_optimizer
from ntune.learn.train import init_model

GPU_BYTES = 80e9
GPU_USABLE = 0.9  # CUDA context, allocator slack and workspaces take the rest
N_FRAMES = 5000


def _config(n_neurons: int) -> NtuneConfig:
    base = load_config("configs/quickstart.yaml")
    return config_from_dict(
        {**base.model_dump(), "simulation": {**base.simulation.model_dump(), "n_neurons": n_neurons}}
    )


def single_step(config: NtuneConfig, u: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The step of ``fit``: random frames, loss_terms, backward, fused Adam."""
    model = init_model(config, u.shape[1], torch.device("cpu"))
    optimizer = make_optimizer(model, config.training)
    coeffs = (l1_coefficient(config, 0), config.training.coeff_lin_phi_zero, config.training.coeff_edge_diff)
    batch = config.training.batch_size

    def step() -> None:
        idx = torch.randint(len(u), (batch,))  # (batch,)
        terms = loss_terms(model, u[idx], y[idx], coeffs, 3.0)  # (4,)
        optimizer.zero_grad(set_to_none=True)
        terms.sum().backward()
        optimizer.step()

    return step


def population_step(config: NtuneConfig, K: int, u: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The step of ``train_population`` for K copies of ``config`` (different seeds)."""
    configs = [
        config.model_copy(update={"training": config.training.model_copy(update={"seed": k})})
        for k in range(K)
    ]
    model = PopulationGNN([init_model(c, u.shape[1], torch.device("cpu")) for c in configs])
    tc = config.training
    lr = torch.tensor(
        [[tc.learning_rate_W_start, tc.learning_rate_embedding_start, tc.learning_rate_start]] * K
    )
    optimizer = BatchedOptimizer(model.param_groups(), tc.optimizer, lr)
    coeffs = tuple(
        torch.full((K,), float(c))
        for c in (l1_coefficient(config, 0), tc.coeff_lin_phi_zero, tc.coeff_edge_diff)
    )

    def step() -> None:
        idx = torch.randint(len(u), (K, tc.batch_size))  # (K, batch)
        terms = loss_terms(model, u[idx], y[idx], coeffs, 3.0)  # (K, 4)
        for p, _ in optimizer.params:
            p.grad = None
        terms.sum().backward()
        optimizer.step()

    return step


def timed(step: Callable[[], None], seconds: float) -> float:
    """Steps per second of ``step`` over about ``seconds`` (after two warm-up steps)."""
    step()
    step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - start)


def saved_bytes(step: Callable[[], None]) -> int:
    """Bytes of the tensors autograd saves for backward in one step (activations)."""
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per comparison")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile (inductor) of the loss"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    config = _config(100)
    u, y = torch.randn(N_FRAMES, 100), torch.randn(N_FRAMES, 100)  # (T, N)
    print("\n## quickstart step (N = 100, batch 8)")
    ref = single_step(config, u, y)
    variants: dict[str, Callable[[], None]] = {"reference (eager fit step)": ref}
    if args.compile:
        model = init_model(config, 100, torch.device("cpu"))
        optimizer = make_optimizer(model, config.training)
        coeffs = (l1_coefficient(config, 0), 1.0, 100.0)
        loss = torch.compile(lambda uu, yy: loss_terms(model, uu, yy, coeffs, 3.0).sum())

        def compiled() -> None:
            idx = torch.randint(N_FRAMES, (8,))
            optimizer.zero_grad(set_to_none=True)
            loss(u[idx], y[idx]).backward()
            optimizer.step()

        start = time.perf_counter()
        compiled()
        print(f"torch.compile (inductor) first step: {time.perf_counter() - start:.1f} s")
        variants["torch.compile (inductor)"] = compiled
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            rates[name].append(timed(step, args.seconds))
    base = max(rates["reference (eager fit step)"])
    for name, r in rates.items():
        print(f"{name:32s} {max(r):8.1f} steps/s  ({1e3 / max(r):.2f} ms)  x{max(r) / base:.2f}")

    for n_neurons in (100, 1000):
        config = _config(n_neurons)
        u, y = torch.randn(N_FRAMES, n_neurons), torch.randn(N_FRAMES, n_neurons)
        print(f"\n## population vs single trials, N = {n_neurons} (member-steps per second)")
        steps = {"single": single_step(config, u, y)}
        steps.update({f"K={K}": population_step(config, K, u, y) for K in (1, 4, 16)})
        sizes = {"single": 1, "K=1": 1, "K=4": 4, "K=16": 16}
        seconds = args.seconds * (1 if n_neurons == 100 else 3)
        rates = {k: [] for k in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                rates[name].append(timed(step, seconds) * sizes[name])
        single = max(rates["single"])
        for name, r in rates.items():
            print(f"{name:8s} {max(r):9.1f} member-steps/s  x{max(r) / single:.2f} of single trials")

    print("\n## memory per member at N = 1000 (float32)")
    config = _config(1000)
    u, y = torch.randn(N_FRAMES, 1000), torch.randn(N_FRAMES, 1000)
    model = PopulationGNN([init_model(config, 1000, torch.device("cpu"))])
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    W_bytes = model.W.numel() * model.W.element_size()
    state = 4 * param_bytes  # parameters, gradients, Adam m and v
    act = saved_bytes(population_step(config, 1, u, y))
    data = 2 * 90_000 * 1000 * 4  # u and y training frames at upstream scale (T = 100 000, 10 % held out)
    per_member = state + act
    print(f"W: {W_bytes / 1e6:.1f} MB; W + MLPs + gradients + Adam m, v: {state / 1e6:.1f} MB")
    print(
        f"activations saved for backward (batch 8): {act / 1e6:.1f} MB; per member: {per_member / 1e6:.1f} MB"
    )
    k_max = int((GPU_BYTES * GPU_USABLE - data) // per_member)
    print(f"largest K on an 80 GB GPU ({GPU_USABLE:.0%} usable, {data / 1e9:.2f} GB of frames): {k_max}")


if __name__ == "__main__":
    main()

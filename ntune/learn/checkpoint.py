"""Self-describing checkpoints of a training run (one ``torch.save`` dict).

Keys: ``model`` (state dict), ``model_args`` (n_neurons, signal_model_name and the graph_model section,
enough to rebuild the SignalGNN), ``optimizer`` (state dict), ``config`` (the full config as a plain dict), ``epoch``,
``metrics`` (final), ``history``, ``status``, ``ntune_version``, ``format`` (an int, bumped on change).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import torch

from ntune.config import NtuneConfig, config_from_dict, config_to_dict
from ntune.learn.model import SignalGNN


class Checkpointable(Protocol):
    """What a checkpoint stores of a training result (``ntune.learn.train.TrainResult`` has it; no import of it)."""

    model: SignalGNN
    config: NtuneConfig | None
    optimizer_state: Any
    epoch: int
    metrics: dict[str, Any]
    history: Any
    status: str


FORMAT = 1


def save_checkpoint(result: Checkpointable, path: str | Path) -> Path:
    """Write ``result`` (model, optimizer state, config, epoch, metrics) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = result.model
    payload = {
        "format": FORMAT,
        "ntune_version": version("ntune"),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_args": {
            "n_neurons": model.n_neurons,
            "signal_model_name": model.signal_model_name,
            "graph_model": config_to_dict(result.config)["graph_model"] if result.config else None,
        },
        "optimizer": result.optimizer_state,
        "config": config_to_dict(result.config) if result.config else None,
        "epoch": result.epoch,
        "metrics": result.metrics,
        "history": result.history,
        "status": result.status,
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """The saved dict with ``model`` rebuilt as a SignalGNN on ``device`` and ``config`` as an NtuneConfig."""
    payload = torch.load(Path(path), map_location=device, weights_only=False)
    config = config_from_dict(payload["config"]) if payload.get("config") else None
    state = payload["model"]
    mask = state["mask"].bool()  # (N, N)
    i, j = torch.nonzero(mask, as_tuple=True)
    edge_index = torch.stack([j, i])  # (2, E) rows [source j, target i]
    args = payload["model_args"]
    if config is not None:
        model = SignalGNN.from_config(config.graph_model, args["n_neurons"], edge_index=edge_index)
    else:
        n_emb = state["a"].shape[1]
        name = args.get("signal_model_name", "PDE_N2")  # written since PDE_N4; earlier files are PDE_N2
        model = SignalGNN(
            args["n_neurons"], embedding_dim=n_emb, edge_index=edge_index, signal_model_name=name
        )
    model.load_state_dict(state)
    payload["model"] = model.to(device)
    payload["config"] = config
    return payload

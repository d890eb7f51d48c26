"""Checks made before anything starts: memory, storage, the cluster's resources, file names from data.

Every check raises a :class:`~ntune.config.ConfigError` naming the field, the value and what is
available, so the CLI exits 2 with nothing started and nothing written. Memory figures are estimates
of the peak host (CPU) memory of one process, from the array shapes the simulator and the trainer
allocate (see :func:`simulation_bytes` and :func:`trial_bytes`); they are meant to catch sizes that
cannot fit (10^7 neurons asks for hundreds of TiB), not to predict usage to the percent. No Ray,
no torch.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ntune.config import ConfigError, NtuneConfig, SimulationConfig, config_from_dict, set_dotted

RANK_FRAMES = 2000  # frames the effective-rank SVD uses (ntune.data.simulate.RANK_FRAMES)
# Peak bytes per W entry (N^2): simulating (float64 W, float64 mask uniforms, bool mask, product,
# float32 copy, float64 eigenvalue workspace) and training (W, its gradient and two Adam moments,
# mask, W * mask and its gradient, float64 metric copies).
SIM_BYTES_PER_W_ENTRY = 40
TRAIN_BYTES_PER_W_ENTRY = 56
# float32 activations kept per (frame, neuron, hidden unit, layer) of a batch: lin_edge and lin_phi,
# forward and backward, and the monotonicity penalty's second lin_edge pass.
ACTIVATION_FLOATS = 6
MEMORY_KEYS = (
    "simulation.n_neurons",
    "simulation.n_frames",
    "training.batch_size",
    "graph_model.hidden_dim",
    "graph_model.n_layers",
    "graph_model.embedding_dim",
    "graph_model.backend",
)
BAD_NAME_CHARS = ("/", "\\", "\x00")


def safe_name(label: Any) -> str:
    """``label`` as one file-name component: path separators and NUL become '_', '.'/'..' are prefixed.

    Names derived from data (block labels read from an experiment folder) go through this before they
    become file names, so every file lands inside the folder it was meant for.
    """
    name = str(label)
    for c in BAD_NAME_CHARS:
        name = name.replace(c, "_")
    if name in ("", ".", ".."):
        name = f"_{name}"
    return name


def gib(n_bytes: float) -> str:
    """``n_bytes`` in GiB (or TiB above 1024 GiB), 1 decimal."""
    g = n_bytes / 2**30
    return f"{g / 1024:.1f} TiB" if g >= 1024 else f"{g:.1f} GiB"


def total_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def simulation_bytes(sim: SimulationConfig) -> int:
    """Estimated peak host memory of simulating ``sim``: W and the mask, u and y (T, N), the summary SVD."""
    n, t = sim.n_neurons, sim.n_frames
    return SIM_BYTES_PER_W_ENTRY * n * n + 2 * 4 * t * n + 2 * 8 * min(t, RANK_FRAMES) * n


def trial_bytes(cfg: NtuneConfig) -> int:
    """Estimated peak host memory of one trial / ``ntune train``: simulate (on a cache miss), then train."""
    sim, gm, tr = cfg.simulation, cfg.graph_model, cfg.training
    n, t = sim.n_neurons, sim.n_frames
    data = 2 * 4 * t * n  # u and y, float32 (T, N)
    train = TRAIN_BYTES_PER_W_ENTRY * n * n
    train += 4 * ACTIVATION_FLOATS * tr.batch_size * n * gm.hidden_dim * gm.n_layers
    if gm.backend == "edge":
        train += 4 * tr.batch_size * n * n * (gm.hidden_dim + 2)  # per-edge messages of the batch
    return max(simulation_bytes(sim), data + train)


def check_memory(cfg: NtuneConfig, what: str = "trial", available: int | None = None) -> None:
    """Refuse a simulation (``what="simulation"``) or a trial that cannot fit in this machine's memory."""
    available = total_memory() if available is None else available
    need = simulation_bytes(cfg.simulation) if what == "simulation" else trial_bytes(cfg)
    if available and need > available:
        sim = cfg.simulation
        raise ConfigError(
            f"simulation.n_neurons = {sim.n_neurons}, simulation.n_frames = {sim.n_frames}: a {what} needs "
            f"about {gib(need)} of memory (estimate), but this machine has {gib(available)}; "
            "lower simulation.n_neurons or simulation.n_frames"
        )


def _worst_case_configs(study: Any, base: dict[str, Any]) -> Iterable[NtuneConfig]:
    """One config per block value, with every searched size parameter at its largest value."""
    for value in study.block_values:
        data = copy.deepcopy(base)
        set_dotted(data, study.block_key, value)
        for key, new in study.block_overrides().get(value, {}).items():
            set_dotted(data, key, new)
        for key, dom in study.space.items():
            if key not in MEMORY_KEYS:
                continue
            candidates = dom["values"] if dom["type"] == "choice" else [dom["high"]]
            numbers = [x for x in candidates if isinstance(x, int | float) and not isinstance(x, bool)]
            if numbers:
                set_dotted(data, key, int(max(numbers)) if dom["type"] != "uniform" else max(numbers))
            elif "edge" in candidates:
                set_dotted(data, key, "edge")
        yield config_from_dict(data)


def check_storage(storage_path: str | Path) -> None:
    """Refuse a ``storage_path`` that is not a folder or in which ntune cannot create folders.

    Creates nothing: the nearest existing ancestor must be a folder where a probe folder can be made
    (and is removed at once). A URI (``s3://bucket/prefix``, see :mod:`ntune.study.storage`) is checked for
    a known scheme and a bucket only: no local-folder checks, no network.
    """
    from ntune.study.storage import check_uri, is_uri

    if is_uri(storage_path):
        check_uri(str(storage_path))
        return
    if "://" in str(storage_path):  # file://
        storage_path = str(storage_path)[len("file://") :]
    path = Path(storage_path).expanduser()
    if "\x00" in str(storage_path):
        raise ConfigError(f"storage_path: {str(storage_path)!r} contains a NUL character")
    path = path.absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"storage_path: {path} exists and is not a folder; give a folder")
    probe_at = path
    while not probe_at.exists():
        probe_at = probe_at.parent
    if not probe_at.is_dir():
        raise ConfigError(
            f"storage_path: {path} cannot be created, because {probe_at} is a file, not a folder"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ntune-probe-", dir=probe_at))
    except OSError as err:
        raise ConfigError(
            f"storage_path: cannot create folders in {probe_at} ({err.strerror or err}); "
            "give a writable folder (--storage or storage_path)"
        ) from None


def check_study(study: Any, base: dict[str, Any], available: int | None = None) -> None:
    """Before Ray starts: the storage folder is usable and every block's largest trial fits in memory."""
    check_storage(study.storage_path)
    for cfg in _worst_case_configs(study, base):
        try:
            check_memory(cfg, "trial", available)
        except ConfigError as err:
            raise ConfigError(
                f"blocks.{study.block_key} = {cfg_value(cfg, study.block_key)}: {err}"
            ) from None


def cfg_value(cfg: NtuneConfig, key: str) -> Any:
    """The value at dotted ``key`` of a config."""
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def check_resources(request: Mapping[str, float], nodes: Sequence[Mapping[str, float]]) -> None:
    """Refuse a per-trial request (``{"cpu": 1, "gpu": 0.25}``) that no node of the cluster can hold.

    ``nodes``: the total resources of each alive node, Ray's names (``{"CPU": 2.0, "GPU": 0.0}``).
    """
    for field, ray_name in (("cpu", "CPU"), ("gpu", "GPU")):
        want = float(request.get(field, 0.0))
        if want <= 0:
            continue
        sizes = [float(node.get(ray_name, 0.0)) for node in nodes]
        if not sizes or max(sizes) < want:
            total = sum(sizes)
            largest = max(sizes, default=0.0)
            raise ConfigError(
                f"resources.{field} = {want:g} per trial, but no node of the Ray cluster has that many: "
                f"the cluster has {total:g} {ray_name} in all ({len(sizes)} node(s), largest {largest:g}); "
                f"lower resources.{field} (--set resources.{field}=...) or join a cluster that has them "
                "(--address)"
            )


def preflight(study: Any, nodes: Sequence[Mapping[str, float]]) -> None:
    """After Ray started or joined, before any trial: each trial's request fits on some node."""
    check_resources(study.resources.model_dump(), nodes)

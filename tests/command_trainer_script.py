"""A stand-in for a user's training program, run by a study's command trainer (tests/test_command_trainer.py).

``python command_trainer_script.py CONFIG METRICS [--format jsonl|key_value]`` reads the trial's ntune
config and writes closed-form metrics of its values (:func:`closed_form`) to METRICS in ``STEPS``
evaluations under its own names (``R2``, ``cluster_acc``), so a study's results are known exactly. By the
config's filling factor it also plays the failures a command trainer must survive: ``FAIL_FF`` writes to
stderr and exits 3, ``HANG_FF`` starts a child in its process group, writes both pids to
``$NTUNE_TRIAL_DIR/pids.json`` and sleeps; ``KILL_FF`` plays a worker lost to the system (the OOM
killer, a node going down): on its first attempt (no file at ``$KILL_MARKER`` yet) it writes that file
and SIGKILLs its parent, the Ray worker running the trial, then trains as usual on the next attempt. It
records the environment it got in ``env.json``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

TARGET_LR_W = 1e-2  # connectivity R2 is 1 here
STEPS = 3  # evaluations written, the last one final
STEP_S = 0.4  # seconds between evaluations (longer than the trial's poll interval)
FAIL_FF, HANG_FF, KILL_FF = 0.5, 0.25, 0.75
FAIL_MESSAGE = "closed-form script: no network at filling factor 0.5"
ENV_KEYS = ("OMP_NUM_THREADS", "NTUNE_TRIAL_ID", "NTUNE_CONFIG", "NTUNE_METRICS", "CUDA_VISIBLE_DEVICES")


def closed_form(config: dict[str, Any]) -> dict[str, float]:
    """connectivity_R2 peaks at lr_W = TARGET_LR_W (a parabola in log10 lr_W), cluster_accuracy falls with L1."""
    training = config["training"]
    r2 = 1.0 - (math.log10(training["learning_rate_W_start"]) - math.log10(TARGET_LR_W)) ** 2 / 9.0
    cluster = 1.0 / (1.0 + training["coeff_W_L1"] * 1e5)
    return {"connectivity_R2": r2, "cluster_accuracy": cluster}


def _write(path: Path, row: dict[str, Any], fmt: str) -> None:
    with path.open("a") as f:
        if fmt == "jsonl":
            f.write(json.dumps(row) + "\n")
        else:
            f.write("".join(f"{k}: {v}\n" for k, v in row.items() if k != "final"))


def main(argv: list[str]) -> int:
    config_path, metrics_path = Path(argv[0]), Path(argv[1])
    fmt = argv[argv.index("--format") + 1] if "--format" in argv else "jsonl"
    trial_dir = Path(os.environ["NTUNE_TRIAL_DIR"])
    env = {k: os.environ.get(k) for k in ENV_KEYS} | {"cwd": os.getcwd()}
    (trial_dir / "env.json").write_text(json.dumps(env))
    config = yaml.safe_load(config_path.read_text())
    ff = config["simulation"]["connectivity_filling_factor"]
    if ff == FAIL_FF:
        for k in range(30):  # more than the tail keeps
            print(f"preparing step {k}", file=sys.stderr)
        print(FAIL_MESSAGE, file=sys.stderr)
        return 3
    if ff == HANG_FF:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (trial_dir / "pids.json").write_text(json.dumps([os.getpid(), child.pid]))
        time.sleep(600)
        return 0
    if ff == KILL_FF and not Path(os.environ["KILL_MARKER"]).exists():
        Path(os.environ["KILL_MARKER"]).write_text(str(os.getppid()))
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(600)  # never reached in practice: this run's trial is gone
        return 0
    final = closed_form(config)
    for step in range(1, STEPS + 1):
        time.sleep(STEP_S)
        row = {"R2": final["connectivity_R2"], "cluster_acc": final["cluster_accuracy"]}
        if step < STEPS:  # earlier evaluations: a fraction of the result
            row = {k: v * step / STEPS for k, v in row.items()}
        _write(metrics_path, {**row, "iteration": step, "n_iterations": STEPS, "final": step == STEPS}, fmt)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

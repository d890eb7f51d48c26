"""The notebooks: stored without outputs, equal to what notebooks/build_notebooks.py writes, and executed.

01 runs on a tiny network (16 neurons, 500 frames); 02 on a tiny real study (2 blocks x 2 trials) run
here on the session's Ray. The kernel is this interpreter, through a kernelspec written to a temp dir
(JUPYTER_PATH), so the test needs no `ipykernel install` and works on a fresh clone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import build_notebooks  # noqa: E402
from study_fakes import TINY_RUN  # noqa: E402


@pytest.mark.parametrize("name", sorted(build_notebooks.NOTEBOOKS))
def test_notebooks_are_stored_without_outputs_and_up_to_date(name: str) -> None:
    stored = (NOTEBOOKS / name).read_text()
    assert stored == build_notebooks.render(name), (
        f"run `python notebooks/build_notebooks.py` ({name} was edited)"
    )
    nb = nbformat.reads(stored, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", []) and "os.environ.get" in code[0].source
    imports = {
        line.split()[1] for c in code for line in c.source.splitlines() if line.startswith("from ntune")
    }
    assert imports <= {"ntune.plots"}, imports  # the public API (`import ntune`), and the plots to draw
    assert any(line == "import ntune" for c in code for line in c.source.splitlines())


def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    from nbclient import NotebookClient

    kernels = tmp_path / "jupyter" / "kernels" / "ntune-test"
    kernels.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ntune (test)",
        "language": "python",
    }
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, kernel_name="ntune-test", timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return nb


def outputs(nb: Any) -> tuple[str, int]:
    """All text the notebook printed, and how many images it showed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            data = out.get("data", {})
            text.append(data.get("text/plain", "") if isinstance(data.get("text/plain"), str) else "")
            images += "image/png" in data
    return "".join(text), images


@pytest.mark.slow
def test_01_simulate_and_train_runs_on_a_tiny_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    nb = execute("01_simulate_and_train.ipynb", tmp_path, monkeypatch, {"NTUNE_NB_CONFIG": str(config)})
    text, images = outputs(nb)
    assert "status: ok" in text and "connectivity_R2:" in text and "rollout of 20 frames" in text
    assert images >= 5, "activity/connectivity, W scatter, embedding, lin_phi, lin_edge, loss, rollout"


@pytest.mark.slow
@pytest.mark.integration
def test_02_analyse_study_runs_on_a_tiny_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_session: None
) -> None:
    from rich.console import Console

    from ntune.cli.run import run_command

    study = {
        "name": "nb",
        "base": TINY_RUN,
        "blocks": {"simulation.connectivity_filling_factor": [1.0, 0.5]},
        "space": {"training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1}},
        "n_iter_block": 2,
        "max_concurrent_trials": 2,
        "storage_path": str(tmp_path / "results"),
    }
    path = tmp_path / "nb.yaml"
    path.write_text(yaml.safe_dump(study))
    console = Console(record=True, width=160)
    assert run_command(path, console=console) == 0, console.export_text()
    nb = execute(
        "02_analyse_study.ipynb",
        tmp_path,
        monkeypatch,
        {"NTUNE_NB_EXPERIMENT": str(tmp_path / "results" / "nb")},
    )
    text, images = outputs(nb)
    assert "nb: 4 trials completed, 0 running" in text
    assert "connectivity_filling_factor=0.5" in text and "Node 1: UCB=" in text
    assert images >= 1 + 2 + 2, "landscape, a tree per block, a best scatter per block"

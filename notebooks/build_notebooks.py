"""Writes the analysis notebooks (without outputs) from the cell sources below.

    python notebooks/build_notebooks.py          # rewrites 01_simulate_and_train.ipynb, 02_analyse_study.ipynb

Edit the cells here, not in Jupyter, so that the notebooks in git stay output-free and reviewable;
tests/test_notebooks.py checks that the .ipynb files equal what this script writes, and executes them.
The first code cell of each notebook holds its parameters, read from environment variables so that a
test (or you) can point it at other inputs without editing it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SHOW = '''\
import io

from IPython.display import Image, display


def show(fig):
    """Display a matplotlib figure as a PNG (ntune's figures use the Agg backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    display(Image(buf.getvalue()))'''

NB01 = [
    new_markdown_cell(
        "# One network: simulate, train, check\n\n"
        "Simulate a PDE_N2 network, train a SignalGNN on it, and look at what it learned: the W scatter "
        "(learned against true connectivity), the neuron embedding, and a rollout of the learned model "
        "from the first held-out frame. Uses ntune's public API only (`import ntune`), and `ntune.plots` to draw."
    ),
    new_code_cell(
        "# Parameters (environment variables override them; tests/test_notebooks.py uses a tiny network)\n"
        "import os\n\n"
        'CONFIG = os.environ.get("NTUNE_NB_CONFIG", "../configs/quickstart.yaml")  # a run config\n'
        'OVERRIDES = [s for s in os.environ.get("NTUNE_NB_SET", "").split(";") if s]  # e.g. training.coeff_W_L1=1e-6\n'
        'N_TRACES = int(os.environ.get("NTUNE_NB_TRACES", "4"))  # neurons shown in the rollout plot',
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import torch\n\n"
        "import ntune\n"
        "from ntune.plots import plot_activity, plot_connectivity\n\n"
        "torch.set_num_threads(1)  # one thread is fastest at quickstart size\n" + SHOW
    ),
    new_markdown_cell("## The run config\n\nValidated on load; `OVERRIDES` are dotted `key=value` settings."),
    new_code_cell("cfg = ntune.load_config(CONFIG, OVERRIDES)\nprint(ntune.dump_config(cfg))"),
    new_markdown_cell(
        "## Simulate (or load from the cache)\n\n"
        "Data are cached in `$NTUNE_CACHE` (default `~/.cache/ntune`) under a hash of the simulation section."
    ),
    new_code_cell(
        "data = ntune.load_or_simulate(cfg.simulation)\n"
        'print(f"u: {data.u.shape}, cache entry: {data.path}")\n'
        "for k, v in data.summary.items():\n"
        '    print(f"  {k}: {v:.4g}")\n'
        "fig, axes = plt.subplots(1, 2, figsize=(10, 4))\n"
        "plot_activity(axes[0], data.u, cfg.simulation.delta_t)\n"
        "plot_connectivity(axes[1], data.W)\n"
        "show(fig)\n"
        "plt.close(fig)"
    ),
    new_markdown_cell("## Train\n\n`fit` returns the status, the final metrics, the model and the loss curve."),
    new_code_cell(
        "result = ntune.fit(cfg, data)\n"
        'print("status:", result.status)\n'
        'for k in ("connectivity_R2", "cluster_accuracy", "test_R2", "test_pearson", "connectivity_slope",\n'
        '          "zero_band", "final_loss", "training_time_min"):\n'
        '    print(f"  {k}: {result.metrics[k]:.4f}")'
    ),
    new_markdown_cell(
        "## W scatter, embedding, learned functions, loss\n\n"
        "The scatter is scale-corrected (W is identifiable only up to the gain of `lin_edge`); the embedding "
        "is coloured by true neuron type, with the k-means cluster accuracy in the title."
    ),
    new_code_cell(
        'assert result.status == "ok", "the training diverged: lower the learning rates"\n'
        "for name, fig in ntune.figures(result.model, data, result.metrics, result.losses).items():\n"
        "    show(fig)"
    ),
    new_markdown_cell(
        "## Rollout from the first held-out frame\n\n"
        "The learned model and the true model are integrated (Euler) from the first frame the training "
        "never saw; `rollout_scores` gives the same test_R2 / test_pearson as the training reported."
    ),
    new_code_cell(
        "n_frames = data.u.shape[0]\n"
        "start = n_frames - int(round(n_frames * cfg.training.test_fraction))\n"
        "n_roll = min(cfg.training.n_rollout_frames, n_frames - start)\n"
        "learned, true = ntune.rollout(result.model, data, start, n_roll)\n"
        "test_R2, test_pearson = ntune.rollout_scores(learned, true)\n"
        'print(f"rollout of {n_roll} frames from frame {start}: test_R2 {test_R2:.4f}, test_pearson {test_pearson:.4f}")\n'
        'assert np.isclose(test_R2, result.metrics["test_R2"], atol=1e-3)\n'
        "t = (start + np.arange(n_roll)) * cfg.simulation.delta_t\n"
        "fig, ax = plt.subplots(figsize=(8, 4))\n"
        "for i in np.linspace(0, data.u.shape[1] - 1, N_TRACES).astype(int):\n"
        '    (line,) = ax.plot(t, true[:, i], lw=1.5, label=f"neuron {i}")\n'
        '    ax.plot(t, learned[:, i], "--", color=line.get_color(), lw=1)\n'
        'ax.set_xlabel("time"); ax.set_ylabel("u"); ax.set_title("true (solid) and learned (dashed) rollout")\n'
        "ax.legend(fontsize=8)\n"
        "show(fig)\n"
        "plt.close(fig)"
    ),
]

NB02 = [
    new_markdown_cell(
        "# Analyse a study\n\n"
        "Reads an experiment folder (`storage_path/<name>`, finished or still running, local or copied "
        "from a cluster): the sparsity comparison table, R² and cluster accuracy against the filling "
        "factor, the searcher's tree per block, and the W scatter of each block's best trial. Uses "
        "`ntune.load_experiment` and `ntune.best_records`, and the files the study keeps "
        "in the folder (`trees/<block>.png`, `ucb/<block>.txt`, each trial's `W_scatter.png`)."
    ),
    new_code_cell(
        "# Parameters (environment variables override them; tests/test_notebooks.py uses a tiny study)\n"
        "import os\n\n"
        'EXPERIMENT = os.environ.get("NTUNE_NB_EXPERIMENT", "../ntune_results/quickstart")  # storage_path/name',
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n"
        "from IPython.display import Markdown\n\n"
        "import ntune\n\n"
        + SHOW
        + "\n\n\n"
        "exp = Path(EXPERIMENT)\n"
        "info, records, running, rows = ntune.load_experiment(exp)\n"
        "study = info[\"study\"]\n"
        'print(f"{study[\'name\']}: {len(records)} trials completed, {len(running)} running; blocks by {info[\'block_key\']}")'
    ),
    new_markdown_cell("## Comparison table\n\nOne row per block: best R², best cluster accuracy, robust?, the best node."),
    new_code_cell(
        "table = pd.DataFrame(rows)\n"
        'columns = [c for c in ("block", "value", "trials", "budget", "best_R2", "best_cluster", "robust", "best_node")\n'
        "           if c in table.columns]\n"
        "table[columns]"
    ),
    new_markdown_cell("## Landscape: best R² and cluster accuracy against the block value"),
    new_code_cell(
        'numeric = table[pd.to_numeric(table["value"], errors="coerce").notna()].sort_values("value")\n'
        "fig, ax = plt.subplots(figsize=(6, 4))\n"
        'ax.plot(numeric["value"], numeric["best_R2"], "o-", label="best connectivity R²")\n'
        'ax.plot(numeric["value"], numeric["best_cluster"], "s-", label="best cluster accuracy")\n'
        'for name, t in study["objective"]["thresholds"].items():\n'
        '    ax.axhline(t, color="grey", ls=":", lw=1)\n'
        'ax.set_xlabel(info["block_key"]); ax.set_ylim(-0.05, 1.05); ax.legend()\n'
        "show(fig)\n"
        "plt.close(fig)"
    ),
    new_markdown_cell("## Trees\n\nThe searcher's UCB tree per block, as the study draws and writes it."),
    new_code_cell(
        "for row in rows:\n"
        '    label = row["block"]\n'
        '    display(Markdown(f"### {label}"))\n'
        '    png, txt = exp / "trees" / f"{label}.png", exp / "ucb" / f"{label}.txt"\n'
        "    if png.is_file():\n"
        "        display(Image(filename=str(png)))\n"
        "    if txt.is_file():\n"
        "        print(txt.read_text())"
    ),
    new_markdown_cell("## The best trial of each block: its W scatter"),
    new_code_cell(
        "best = ntune.best_records(records, rows)\n"
        "for label, rec in best.items():\n"
        '    m = rec["metrics"]\n'
        "    display(Markdown(\n"
        '        f"**{label}**: node {rec[\'search\'].get(\'node\')}, trial {rec[\'trial_id\']}, "\n'
        '        f"R² {m[\'connectivity_R2\']:.3f}, cluster {m[\'cluster_accuracy\']:.3f}, {rec[\'classification\']}"\n'
        "    ))\n"
        '    scatter = Path(rec["trial_dir"]) / "W_scatter.png"\n'
        "    if scatter.is_file():\n"
        "        display(Image(filename=str(scatter)))"
    ),
]


def notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: the files do not change when nothing changed
    return nb


NOTEBOOKS = {"01_simulate_and_train.ipynb": NB01, "02_analyse_study.ipynb": NB02}


def render(name: str) -> str:
    return nbformat.writes(notebook(NOTEBOOKS[name]))


def main() -> int:
    for name in NOTEBOOKS:
        text = render(name)
        nbformat.validate(nbformat.reads(text, as_version=4))
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

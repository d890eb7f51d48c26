"""docs/reference.md is the generated configuration reference, up to date with the pydantic models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ntune.cli.app import app
from ntune.config import NtuneConfig
from ntune.report.reference import domain_models, field_paths, reference_markdown
from ntune.study.config import StudyConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
REGENERATE = "ntune config reference --out docs/reference.md"


def test_committed_reference_is_the_generated_one() -> None:
    assert DOC.read_text() == reference_markdown(), f"docs/reference.md is stale: run `{REGENERATE}`"


def test_every_field_appears() -> None:
    text = reference_markdown()
    run_fields, study_fields = field_paths(NtuneConfig), field_paths(StudyConfig)
    assert {"simulation.n_neurons", "graph_model.backend", "training.coeff_W_L1"} <= set(run_fields)
    assert {"name", "objective.weights", "resources.gpu", "data_limited.probe_trials"} <= set(study_fields)
    for path in run_fields + study_fields:
        assert f"| `{path}` |" in text, path
    for section in ("simulation", "graph_model", "training"):
        model = NtuneConfig.model_fields[section].annotation
        assert model is not None
        for name in model.model_fields:  # type: ignore[union-attr]
            assert f"`{section}.{name}`" in text
    for model in domain_models():
        for name in model.model_fields:
            assert f"`space.<key>.{name}`" in text


def test_constraints_defaults_and_choices_are_shown() -> None:
    rows = {line.split(" | ")[0].strip("| `"): line for line in reference_markdown().splitlines()}
    assert "| `int` | `1000` | > 0 |" in rows["simulation.n_neurons"]
    assert "(0, 1]" in rows["simulation.connectivity_filling_factor"]
    assert "[0, 0.9)" in rows["training.test_fraction"]
    assert "`1e-5` | >= 0" in rows["training.coeff_W_L1"]
    assert "one of `adam`, `adamw`, `rmsprop`, `sgd`" in rows["training.optimizer"]
    assert "length 2" in rows["simulation.connectivity_init"]
    assert "`required`" in rows["name"]
    assert '`int \\| "auto"`' in rows["population"]


def test_cli_prints_and_writes_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "reference"])
    assert result.exit_code == 0, result.output
    assert result.output == reference_markdown()
    out = tmp_path / "reference.md"
    result = CliRunner().invoke(app, ["config", "reference", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == reference_markdown()


def test_generator_imports_no_ray_or_torch() -> None:
    code = (
        "import sys\n"
        "from ntune.report.reference import reference_markdown\n"
        "reference_markdown()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

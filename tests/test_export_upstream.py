"""``ntune export --format upstream``: the best configs written into the user's upstream YAML, imported back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from study_fakes import make_experiment
from test_upstream_import import UPSTREAM
from typer.testing import CliRunner

from ntune.cli.app import app
from ntune.config import ConfigError, config_from_dict, config_to_dict, get_dotted
from ntune.report.export import best_records
from ntune.report.upstream_yaml import block_overrides, exported_fields
from ntune.study.experiment import read_experiment
from ntune.upstream import ALIASES, FIELD_MAP, fill_template, import_upstream, upstream_names, upstream_values

FULL, HALF = "connectivity_filling_factor=1.0", "connectivity_filling_factor=0.5"
FIELDS = ["simulation.connectivity_filling_factor", "training.learning_rate_W_start", "training.coeff_W_L1"]
# the sample with a comment on a line the export rewrites, and one on a line it keeps
TEMPLATE = UPSTREAM.replace(
    "    learning_rate_W_start: 2.0E-3\n", "    learning_rate_W_start: 2.0E-3   # lr of W\n"
).replace("    n_neurons: 600\n", "    n_neurons: 600  # network size\n")


def _export(exp: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", str(exp), "--format", "upstream", *args])
    return result.exit_code, result.output


def _template(tmp_path: Path, text: str = TEMPLATE) -> Path:
    path = tmp_path / "my_config.yaml"
    path.write_text(text)
    return path


def test_the_export_map_is_the_importer_table_read_backwards() -> None:
    assert len(set(FIELD_MAP.values())) == len(FIELD_MAP)  # invertible: one upstream name per ntune field
    for upstream, ntune in FIELD_MAP.items():
        assert upstream_names(ntune)[0] == upstream
    assert upstream_names("simulation.connectivity_type") == ["simulation.connectivity_distribution"]
    assert upstream_names("simulation.noise_model_level") == ["simulation.noise_model_level", *ALIASES]
    assert upstream_names("training.first_coeff_L1") == []


def test_round_trip_equals_the_best_config_on_every_exported_field(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    make_experiment(exp_dir)
    code, output = _export(exp_dir, "--template", str(_template(tmp_path)))
    assert code == 0, output
    exp = read_experiment(exp_dir)
    assert exported_fields(exp.info) == FIELDS
    best = best_records(exp.records, exp.ledger.rows())
    assert sorted(best) == sorted([FULL, HALF])
    for label, rec in best.items():
        path = exp_dir / "upstream" / f"{label}.yaml"
        imported, _ = import_upstream(path)
        want = config_to_dict(config_from_dict(rec["config"]))
        got = config_to_dict(imported)
        for key in FIELDS:
            assert get_dotted(got, key) == get_dotted(want, key), (label, key)
        assert imported.simulation.n_neurons == 600 and imported.training.n_epochs == 20  # the template's
    values = {
        label: [
            get_dotted(config_to_dict(import_upstream(exp_dir / "upstream" / f"{label}.yaml")[0]), k)
            for k in FIELDS
        ]
        for label in (FULL, HALF)
    }
    assert values == {FULL: [1.0, 1e-3, 1e-5], HALF: [0.5, 4e-3, 1e-5]}


def test_a_blocks_block_set_fields_are_exported_with_it(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    info = make_experiment(exp_dir)
    info["study"]["block_set"] = {"0.5": ["training.data_augmentation_loop=7", "training.coeff_W_L1=2e-5"]}
    (exp_dir / "study.json").write_text(json.dumps(info))
    overrides = block_overrides(info)
    assert exported_fields(info, overrides.get(0.5)) == [*FIELDS, "training.data_augmentation_loop"]
    assert exported_fields(info, overrides.get(1.0)) == FIELDS
    code, output = _export(exp_dir, "--template", str(_template(tmp_path)))
    assert code == 0, output
    best = best_records(read_experiment(exp_dir).records, read_experiment(exp_dir).ledger.rows())
    trained = config_from_dict(best[HALF]["config"]).training.data_augmentation_loop
    assert trained != 50  # the template's, so the export must write the block's
    assert (
        import_upstream(exp_dir / "upstream" / f"{HALF}.yaml")[0].training.data_augmentation_loop == trained
    )
    assert import_upstream(exp_dir / "upstream" / f"{FULL}.yaml")[0].training.data_augmentation_loop == 50


def test_only_the_exported_lines_change_and_comments_stay(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    make_experiment(exp_dir)
    assert _export(exp_dir, "--template", str(_template(tmp_path)))[0] == 0
    text = (exp_dir / "upstream" / f"{HALF}.yaml").read_text()
    header = [
        line for line in text.splitlines() if line.startswith("# ntune") or line.startswith("# template")
    ]
    body = [line for line in text.splitlines() if line not in header]
    before = TEMPLATE.splitlines()
    assert len(body) == len(before)
    changed = [(a, b) for a, b in zip(before, body, strict=True) if a != b]
    assert changed == [
        ("    connectivity_filling_factor: 0.25", "    connectivity_filling_factor: 0.5"),
        ("    coeff_W_L1: 1.0E-4", "    coeff_W_L1: 1.0e-05"),
        ("    learning_rate_W_start: 2.0E-3   # lr of W", "    learning_rate_W_start: 0.004   # lr of W"),
    ]
    assert "changed: simulation.connectivity_filling_factor: 0.25 -> 0.5" in header[1]


def test_a_field_upstream_has_no_name_for_is_refused_by_name_and_nothing_is_written(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    make_experiment(exp_dir)
    info = json.loads((exp_dir / "study.json").read_text())
    info["study"]["space"]["training.first_coeff_L1"] = {"type": "uniform", "low": 0.0, "high": 1.0}
    (exp_dir / "study.json").write_text(json.dumps(info))
    code, output = _export(exp_dir, "--template", str(_template(tmp_path)))
    assert code == 2
    assert "training.first_coeff_L1: has no upstream NeuralGraph name" in output
    assert not (exp_dir / "upstream").exists()


def test_the_template_is_required_and_only_for_upstream(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    make_experiment(exp_dir, n=2)
    code, output = _export(exp_dir)
    assert code == 2 and "--template" in output and "upstream" in output
    assert not (exp_dir / "upstream").exists() and not (exp_dir / "summary.csv").exists()
    result = CliRunner().invoke(app, ["export", str(exp_dir), "--template", str(_template(tmp_path))])
    assert result.exit_code == 2 and "only --format upstream uses a template" in result.output
    assert not (exp_dir / "best").exists()
    code, output = _export(exp_dir, "--template", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml: no such file" in output


def test_values_keep_the_template_spelling_or_are_refused_by_name() -> None:
    template = {"training": {"cluster_method": "distance_plot", "noise_model_level": 0.01}}
    assert upstream_values({"training.cluster_method": "single_linkage"}, template) == {
        "training.cluster_method": "distance_plot"
    }
    assert upstream_values({"training.cluster_method": "kmeans"}, template) == {
        "training.cluster_method": "kmeans"
    }
    with pytest.raises(ConfigError, match="training.cluster_method: 'gmm' has no upstream spelling"):
        upstream_values({"training.cluster_method": "gmm"}, template)
    assert upstream_values({"simulation.noise_model_level": 0.02}, template) == {
        "training.noise_model_level": 0.02
    }
    assert upstream_values({"simulation.noise_model_level": 0.02}, {}) == {
        "simulation.noise_model_level": 0.02
    }
    assert upstream_values(
        {"simulation.connectivity_type": "Gaussian"},
        {"simulation": {"connectivity_distribution": "gaussian"}},
    ) == {"simulation.connectivity_distribution": "gaussian"}


def test_a_layout_the_line_editor_cannot_follow_is_dumped_whole() -> None:
    text = "training:\n    learning_rate_W_start:\n        2.0E-3\n    n_epochs: 3  # kept\n"
    out, kept = fill_template(text, {"training.learning_rate_W_start": 0.004, "simulation.seed": 3})
    assert not kept
    assert yaml.safe_load(out) == {
        "training": {"learning_rate_W_start": 0.004, "n_epochs": 3},
        "simulation": {"seed": 3},
    }
    out, kept = fill_template(
        "training:\n    n_epochs: 3  # kept\n", {"training.batch_size": 2, "dataset": "x"}
    )
    assert kept and out == "dataset: x\ntraining:\n    n_epochs: 3  # kept\n    batch_size: 2\n"

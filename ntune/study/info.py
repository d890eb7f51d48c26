"""The study's info, in one place: block labels, the content of study.json, budgets and ceilings per block.

``study.json`` holds the validated study, its block key, the base config and, computed before the
first trial, each block's identifiability ceiling (:mod:`ntune.data.identifiability`) and trial budget
(a data-limited block gets a probe budget). Everything that reads a budget or a ceiling reads it here;
the journal, status, report and the searcher's budgets all go through these functions. No Ray.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ntune.config import ConfigError
from ntune.data.identifiability import SUMMARY_KEYS, block_line, verdict
from ntune.study.numbers import as_float


def block_label(block_key: str, value: Any) -> str:
    """``connectivity_filling_factor=0.25``: the searcher's name of a block."""
    return f"{block_key.split('.')[-1]}={value}"


def read_info(exp_dir: str | Path) -> dict[str, Any]:
    """The ``study.json`` of an experiment folder."""
    path = Path(exp_dir) / "study.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{exp_dir}: no study.json; is this an ntune experiment folder (storage_path/name)?"
        )
    try:
        info = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise ConfigError(f"{path}: corrupt, not readable as JSON ({err})") from None
    if not isinstance(info, dict) or not {"study", "block_key"} <= info.keys():
        raise ConfigError(f"{path}: corrupt, not an ntune study.json (no 'study' and 'block_key')")
    return info


def study_info(study: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The content of ``study.json``: the validated study (a StudyConfig), its block key and base config."""
    return {
        "study": study.model_dump(mode="json"),
        "block_key": study.block_key,
        "base": base,
        "held_out": study.held_out_networks,  # K held-out networks per block (0: none)
    }


def block_budget(info: Mapping[str, Any], label: str) -> int:
    """Trials the block ``label`` of a study info gets (its probe budget when data-limited)."""
    return int((info.get("block_budgets") or {}).get(label, info["study"]["n_iter_block"]))


def held_out_of(info: Mapping[str, Any]) -> int:
    """K: the held-out networks each block's robust config is confirmed on (0 in a study made before them)."""
    return int(info.get("held_out") or 0)


def probes_of(info: Mapping[str, Any]) -> int:
    """Boundary-probe trials per block with a robust config (``ranges.trials``; 0 without ``ranges``)."""
    ranges = info["study"].get("ranges")  # study.json holds the validated section, every field written
    return 0 if ranges is None else int(ranges["trials"])


def total_budget(info: Mapping[str, Any], labels: list[str]) -> int:
    """The study's largest budget over the block ``labels``: each block's search trials plus its K
    held-out runs and its boundary probes (a block without a robust config runs neither)."""
    return sum(block_budget(info, label) + held_out_of(info) + probes_of(info) for label in labels)


def ceiling_of(info: Mapping[str, Any], label: str) -> float:
    """The block's ceiling from a study info (NaN when not computed)."""
    return as_float(((info.get("ceilings") or {}).get(label) or {}).get("ceiling"))


def _threshold(info: Mapping[str, Any]) -> float:
    return float(info["study"]["objective"]["thresholds"].get("connectivity_R2", 0.0))


def console_lines(info: Mapping[str, Any]) -> list[str]:
    """What the console prints at the start of a study: one line per block, then what data-limited means."""
    ceilings = info.get("ceilings") or {}
    if not ceilings:
        return []
    threshold = _threshold(info)
    lines = ["identifiability (least-squares W with the true dynamics, 1 % target noise):"]
    for label, entry in ceilings.items():
        line = "  " + block_line(label, _numbers(entry), threshold)
        if entry.get("data_limited"):
            n = block_budget(info, label)
            line += f"; probing with {n} trial{'s' if n != 1 else ''} only"
        lines.append(line)
    return lines


def _numbers(entry: Mapping[str, Any]) -> dict[str, float]:
    return {k: as_float(v) for k, v in entry.items() if k in SUMMARY_KEYS}


def memory_section(info: Mapping[str, Any], level: int = 2) -> str:
    """The Identifiability section (a ``level`` heading) of memory.md and the report; empty without ceilings."""
    ceilings = info.get("ceilings") or {}
    if not ceilings:
        return ""
    threshold = _threshold(info)
    out = [
        f"\n{'#' * level} Identifiability\n\n",
        "Ceiling = connectivity_R2 of the least-squares W given the true self-dynamics and phi, with 1 % noise "
        "on the target: no trainer can be expected to beat it.\n\n",
    ]
    for label, entry in ceilings.items():
        numbers = _numbers(entry)
        out.append(f"- {label}: {verdict(numbers, threshold)}")
        if entry.get("data_limited"):
            out.append(
                f". Data-limited: probe budget {block_budget(info, label)} trial(s); failed configs here say "
                "nothing about the hyperparameters"
            )
        out.append("\n")
    return "".join(out)


def probe_budgets(study: Any, info: Mapping[str, Any]) -> dict[Any, int]:
    """block value -> trials for the searcher's ``block_budgets`` (the data-limited blocks of ``info``)."""
    budgets = info.get("block_budgets") or {}
    return {
        v: budgets[block_label(study.block_key, v)]
        for v in study.block_values
        if block_label(study.block_key, v) in budgets
    }

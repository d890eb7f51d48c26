"""A study's ``early_stop`` section: lineage early stopping (:mod:`searchers.early_stop`) as config.

A search child (a one-parameter move from a parent node) is stopped once its score stays ``margin``
below its parent's best run at the same fraction of training, ``patience`` evaluations in a row from
``min_fraction`` of training on. Roots, robustness repeats, retries and held-out runs are never
stopped; a stopped run is a partial result (class ``stopped``), never a failure of its config. The
defaults are the rule with no false stop on the replays in benchmarks/README.md. No Ray.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ntune.config import FiniteFloat, Int
from searchers.early_stop import LineageRule


class EarlyStop(BaseModel):
    """Lineage early stopping of search children (absent: no trial is stopped early)."""

    model_config = ConfigDict(extra="forbid")

    min_fraction: FiniteFloat = Field(
        0.5, ge=0, lt=1, description="Fraction of training before which no trial is stopped ([0, 1))."
    )
    margin: FiniteFloat = Field(
        0.1, ge=0, description="How far below its parent's score a child must be to count as behind (>= 0)."
    )
    patience: Int = Field(
        2, ge=1, description="Evaluations in a row a child must be behind to be stopped (>= 1)."
    )

    def rule(self) -> LineageRule:
        """The rule the scheduler applies."""
        return LineageRule(min_fraction=self.min_fraction, margin=self.margin, patience=self.patience)

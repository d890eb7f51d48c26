"""ntune: hyperparameter search for GNN recovery of PDE_N2 connectivity across sparsity levels."""

from __future__ import annotations

__version__ = "0.1.0"

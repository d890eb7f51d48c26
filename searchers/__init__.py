"""Ray Tune searchers: a dual-objective UCB tree that mutates one parameter per trial."""

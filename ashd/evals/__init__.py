"""Evals: scoring an agent's answers to stored cases (scorers, the grader, the runner)."""

"""Scores, baselines, figures, the HTML report and the `evaluate` entry point."""

"""Tuning: a grid `sweep` and an Optuna `search`, both over child runs."""

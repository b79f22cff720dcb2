"""Training: one loop (`loop`), one pipeline (`pipeline`), and what each model adds."""

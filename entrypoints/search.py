"""`search` entry point of the MLproject: options are parsed in latent_models.cli."""

from latent_models.cli import search

if __name__ == "__main__":
    search()

"""`vamp` entry point of the MLproject: options are parsed in latent_models.cli."""

from latent_models.cli import command

if __name__ == "__main__":
    command("vamp")()

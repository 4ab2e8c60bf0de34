"""`python -m monet fit --config configs/wgan_gp.yaml`: the entry point; the CLI is
monet/cli/main.py."""

from monet.cli.main import cli_main, main

__all__ = ["cli_main", "main"]

if __name__ == "__main__":
    main()

"""`python -m harness ...` runs the command line, like the `harness` script."""

from harness.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()

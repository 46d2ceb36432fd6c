"""`python -m kernelpro` runs the CLI."""

from kernelpro.cli import main

main()

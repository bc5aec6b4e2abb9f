"""``python -m selfdistill`` runs the CLI."""

from selfdistill.cli import console_main

console_main()

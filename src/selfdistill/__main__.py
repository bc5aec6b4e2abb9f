"""``python -m selfdistill`` runs the CLI."""

import sys

from selfdistill.cli import main

sys.exit(main())

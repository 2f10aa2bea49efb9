"""``python -m attnzoo`` runs the CLI."""

import sys

from attnzoo.cli import main

sys.exit(main())

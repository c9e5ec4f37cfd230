"""Run the command line: ``python -m mailticketd``."""

from mailticketd.cli import main

raise SystemExit(main())

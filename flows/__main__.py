"""Allow ``python -m flows ...``."""

from flows.cli import main

raise SystemExit(main())

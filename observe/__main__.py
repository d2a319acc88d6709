"""`python -m observe` is the same as the `observe` command."""

from observe.cli import main

raise SystemExit(main())

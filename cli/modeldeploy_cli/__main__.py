"""`python -m modeldeploy_cli` runs the `modeldeploy` command."""

from __future__ import annotations

import sys

from modeldeploy_cli.main import main

sys.exit(main())

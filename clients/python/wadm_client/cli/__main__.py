"""`python -m wadm_client.cli`: the same as the `wadm` console script."""

import sys

from wadm_client.cli import main

sys.exit(main())

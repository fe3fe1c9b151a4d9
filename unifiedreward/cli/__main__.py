"""``python -m unifiedreward.cli``."""

import sys

from unifiedreward.cli import main

sys.exit(main())

"""``python -m reward_core.toy build OUT_DIR``."""

import sys

from .cli import main

sys.exit(main())

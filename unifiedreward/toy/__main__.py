"""``python -m unifiedreward.toy build OUT_DIR``."""

import sys

from unifiedreward.cli.toy import main

sys.exit(main())

"""Tools built on the `reward_core` judge library: the preference sift, the benchmark harness, the offline
toy world, HTML reports and the ``unifiedreward`` console command.

`reward_core` imports nothing from here; everything here may import `reward_core` (and the CLI may also
import `data_converters` and `integrations`).
"""

__version__ = "0.1.0"

"""UnifiedReward for ms-swift (``--external_plugins integrations/ms_swift/plugin.py --reward_funcs unifiedreward``)."""

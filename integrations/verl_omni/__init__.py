"""UnifiedReward for verl-omni (a scorer loaded by path from its reward config)."""

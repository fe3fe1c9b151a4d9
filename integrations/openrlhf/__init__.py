"""UnifiedReward for OpenRLHF (``--remote_rm_url integrations/openrlhf/reward_func.py``)."""

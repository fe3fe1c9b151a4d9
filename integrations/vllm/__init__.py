"""Serving recipes (vLLM / SGLang launch scripts) for UnifiedReward checkpoints; see docs/serving.md."""

"""``unifiedreward serve``: a reward service (FastAPI + uvicorn) in front of one `UnifiedReward` judge.

One module per job: `config` (the settings), `batcher` (dynamic batching into the judge), `metrics`
(Prometheus), `auth` (bearer key), one module per protocol (media entries: `unifiedreward.media_entries`)
(`api`: our JSON API; `scorer_protocol`: Flow-GRPO / verl-omni HTTP scorers; `openrlhf_protocol`: OpenRLHF's
remote reward model) and `app`, which wires them together. docs/service.md describes the routes.
"""

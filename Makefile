# unifiedreward-hooks — the README's commands.
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# The cached environments are shared by every checkout on a machine: this checkout's code comes first.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: demo test venv venv-llamafactory venv-vllm venv-swift venv-verl chromium netlab toy clean

## Set up both environments, then run the paper's three stages on the offline toy world.
demo: venv venv-llamafactory
	$(PY) examples/demo.py --work-dir demo-work --report-dir demo-report

## Set up the environments, then run the whole test suite (real vLLM and framework tests included, never skipped).
test: venv venv-llamafactory venv-vllm venv-swift venv-verl chromium netlab
	UNIFIEDREWARD_REQUIRE_VLLM=1 UNIFIEDREWARD_REQUIRE_FRAMEWORKS=1 $(PY) -m pytest -q

venv:
	bash env/make_venv.sh main

## Debian's headless Chromium, for the tests that render the HTML reports (needs root, as on CI).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

## ip and nft, for the network-namespace lab of the replica tests (tests/netlab.py; needs root, as on CI).
netlab:
	@command -v ip >/dev/null 2>&1 && command -v nft >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 nftables >/dev/null; }

venv-llamafactory:
	bash env/make_venv.sh llamafactory

## vLLM's CPU build in its own environment, for the real-server tests (GPU users: pip install vllm).
venv-vllm:
	bash env/make_venv.sh vllm

## ms-swift and verl in environments of their own (their pins clash with ours): their loaders run our adapters.
venv-swift:
	bash env/make_venv.sh swift

venv-verl:
	bash env/make_venv.sh verl

## Build the toy world into toy-world/ (checkpoints + synthetic data).
toy: venv
	.venv/bin/unifiedreward toy build toy-world

clean:
	rm -rf demo-work demo-report toy-world .pytest_cache

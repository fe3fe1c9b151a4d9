"""What tests/test_docs.py changes in a documented block before it runs on the toy world.

Only hub ids, GPU devices and server addresses are replaced: everything else in a block runs as written.
A block that cannot run here at all says so in the Markdown itself, on the line before it:

    <!-- pytest.mark.parse_only("needs a GPU: 7B judge in bf16") -->

and is then checked only for argument parsing (each command through its own parser, Python by compiling it
and importing what it imports).
"""

from __future__ import annotations

TOY_JUDGE = "toy-world/reward-qwen2_5_vl"
TOY_POLICY = "toy-world/policy-qwen2_5_vl"
TOY_SD = "toy-world/sd"

# (text in the docs, what runs here), applied in this order; "{server}" is the toy judge's test server.
SUBSTITUTIONS: list[tuple[str, str]] = [
    # a released Qwen3-VL judge -> the toy judge judged as that checkpoint's family (its templates and protocol)
    ('"CodeGoat24/UnifiedReward-Think-qwen3vl-8b"', f'"{TOY_JUDGE}", checkpoint="CodeGoat24/UnifiedReward-Think-qwen3vl-8b"'),
    ('"CodeGoat24/UnifiedReward-Edit-qwen3vl-8b"', f'"{TOY_JUDGE}", checkpoint="CodeGoat24/UnifiedReward-Edit-qwen3vl-8b"'),
    # GPU loading -> CPU, with short answers (the toy judge's text is no verdict; its CoT would run to the limit)
    (', device_map="auto", dtype="bf16"', ", max_new_tokens=8"),
    ("CodeGoat24/UnifiedReward-qwen-7b", TOY_JUDGE),
    ("Qwen/Qwen2.5-VL-7B-Instruct", TOY_POLICY),
    ("Qwen/Qwen2.5-VL-3B-Instruct", TOY_POLICY),
    ("stabilityai/sdxl-turbo", TOY_SD),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", TOY_SD),
    ('.to("cuda")', '.to("cpu")'),
    ("--device cuda", "--device cpu"),
    # servers -> vLLM (CPU build) serving the toy judge
    ("http://localhost:8080/v1", "{server}/v1"),
    ("http://127.0.0.1:8080", "{server}"),
]


def needs_server(code: str) -> bool:
    return any(documented in code and "{server}" in here for documented, here in SUBSTITUTIONS)


def substitute(code: str, server: str | None = None) -> str:
    """``code`` with the table's replacements; ``server`` fills "{server}"."""
    for documented, here in SUBSTITUTIONS:
        if documented in code:
            code = code.replace(documented, here.replace("{server}", server or "{server}"))
    return code

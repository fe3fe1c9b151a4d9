"""One markdown table from a ``gpu_suite.sh`` output folder (scoring.json, dpo_step.json, sift.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(out: Path) -> list[tuple[str, str, str]]:
    table: list[tuple[str, str, str]] = []

    def load(name: str) -> dict | None:
        path = out / f"{name}.json"
        status = (out / f"{name}.status").read_text().strip() if (out / f"{name}.status").exists() else "not run"
        if status != "ok" or not path.exists():
            table.append((name, "status", status))
            return None
        return json.loads(path.read_text())

    if scoring := load("scoring"):
        where = f"{scoring['model']}, {scoring['device']} {scoring['dtype']} {scoring.get('attn')}"
        for task, entry in scoring["tasks"].items():
            for method in ("upstream_loop", "batched_generate", "batched_logit", "bare_forward"):
                table.append((f"scoring {task}", f"{method} samples/s", f"{entry[method]['samples_per_s']:.2f} ({where})"))
            table.append((f"scoring {task}", "logit / upstream", f"{entry['logit_vs_upstream_ratio']:.1f}x"))
            table.append((f"scoring {task}", "overhead_fraction (logit vs bare forward; without prefetch)",
                          f"{entry['overhead_fraction']:.3f}; {entry['overhead_fraction_no_prefetch']:.3f}"))
            table.append((f"scoring {task}", "host cpu ms per item (logit - bare)", f"{entry['host_cpu_ms_per_item']:.2f}"))
    if dpo := load("dpo_step"):
        table.append(("diffusion-dpo step", "ours / theirs step s", f"{dpo['ours']['step_time_s']:.3f} / {dpo['theirs']['step_time_s']:.3f}"))
        table.append(("diffusion-dpo step", "step_time_ratio, peak_mem_ratio", f"{dpo['step_time_ratio']:.2f}, {dpo['peak_mem_ratio']:.2f}"))
        ref = dpo.get("reference_script", {})
        table.append(("diffusion-dpo step", "threads, reference", f"{dpo['config'].get('threads')}, diffusers {ref.get('diffusers')} sha256 {str(ref.get('sha256'))[:12]}"))
    if sift := load("sift"):
        where = f"{sift['model']}, {sift['device']} {sift['dtype']} {sift.get('attn')}, {sift['prompts']}x{sift['candidates_per_prompt']}"
        for method, entry in sift["methods"].items():
            table.append(("sift", f"{method} s (tower media / distinct)", f"{entry['seconds']:.2f} ({entry['tower_media_per_distinct_medium']:.2f}) ({where})"))
        table.append(("sift", "sift_speedup_generate / logit", f"{sift['sift_speedup_generate']:.2f}x / {sift['sift_speedup_logit']:.2f}x"))
        table.append(("sift", "same_selection_fraction (generate / logit)",
                      f"{sift['same_selection_fraction']} / {sift['same_selection_fraction_logit']} on {sift['upstream_bug_free_prompts']} bug-free prompts"))
        table.append(("sift", "same_kept_pair_fraction (generate / logit)",
                      f"{sift['same_kept_pair_fraction']} / {sift['same_kept_pair_fraction_logit']} on {sift['upstream_bug_free_kept']} bug-free kept prompts"))
        table.append(("sift", "kept (upstream / generate / logit)", " / ".join(str(sift["kept"][m]) for m in sift["methods"])))
    return table


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    lines = ["| benchmark | figure | value |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(out)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

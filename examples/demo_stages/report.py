"""``summary.json`` + a self-contained ``index.html`` (plots embedded as base64 PNG) + a terminal summary."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from unifiedreward.report.html import SCRIPT, STYLE  # noqa: E402

from demo_stages.media import media_sections  # noqa: E402


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def loss_figure(summary: dict) -> str | None:
    curves = {
        "reward model SFT (LLaMA-Factory)": summary.get("reward", {}).get("loss_curve"),
        "policy warm-start SFT": [{"step": i + 1, "loss": v} for i, v in
                                  enumerate((summary.get("sift", {}).get("policy_warmstart") or {}).get("losses", []))],
        "policy DPO (TRL)": [{"step": i + 1, "loss": v} for i, v in
                             enumerate((summary.get("dpo", {}).get("policy") or {}).get("losses", []))],
        "Diffusion-DPO": (summary.get("dpo", {}).get("diffusion") or {}).get("loss_curve"),
    }
    curves = {name: curve for name, curve in curves.items() if curve}
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, curve) in zip(axes[0], curves.items()):
        ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
    return _png(fig)


def bench_figure(bench: dict) -> str | None:
    if "before" not in bench or "after" not in bench:
        return None
    keys = ("diff", "tau")
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    width = 0.35
    for offset, when in ((-width / 2, "before"), (width / 2, "after")):
        values = [bench[when].get(key) for key in keys]
        values = [float("nan") if value is None else value for value in values]  # a missing metric is no bar
        bars = ax.bar([i + offset for i in range(len(keys))], values, width, label=f"{when} training")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance (diff)")
    ax.set_xticks(range(len(keys)), ["accuracy w/o ties (diff)", "tau (with ties)"])
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{bench['benchmark']} (toy, {bench['rows']} pairs)", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def reward_histograms(rescore: dict) -> str | None:
    parts = {name: rescore[name] for name in ("understanding", "generation") if name in rescore}
    if not parts:
        return None
    fig, axes = plt.subplots(2, len(parts), figsize=(5 * len(parts), 6.8), squeeze=False)
    for column, (name, result) in enumerate(parts.items()):
        ax = axes[0][column]
        ax.hist(result["scores_before"], bins=20, alpha=0.6, label=f"before (mean {_fmt(result['mean_before'], 5)})")
        ax.hist(result["scores_after"], bins=20, alpha=0.6, label=f"after DPO (mean {_fmt(result['mean_after'], 5)})")
        ax.set_title(f"{name}: held-out reward per candidate", fontsize=10)
        ax.set_xlabel("reward model point score (logit expectation)")
        ax.set_ylabel("candidates")
        ax.legend(fontsize=8)
        ax = axes[1][column]
        before, after = result["prompt_means_before"], result["prompt_means_after"]
        ax.scatter(before, after, s=14)
        if before:
            low, high = min(before + after), max(before + after)
            ax.plot([low, high], [low, high], color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{name}: per held-out prompt ({result['prompts_improved']}/{result['prompts']} above y=x)",
                     fontsize=10)
        ax.set_xlabel("mean reward, base model")
        ax.set_ylabel("mean reward, aligned model")
        ax.ticklabel_format(useOffset=False)
    return _png(fig)


def _p(value: float | None) -> str:
    return "n/a" if value is None else "<0.0001" if value < 1e-4 else f"{value:.4f}"


GROUND_TRUTH_UNITS = {"understanding": "answer correctness (share of asked attributes right)",
                      "generation": "exposure (share of well-lit quadrants)"}


def ground_truth_figure(truth: dict) -> str | None:
    """Per held-out prompt, the oracle's score: base model, DPO on the judge's pairs, and the control."""
    if not truth:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), squeeze=False)
    for ax, name in zip(axes[0], ("understanding", "generation")):
        main, control = truth[name], truth["control"][name]
        runs = {"base": main["per_prompt_before"], "DPO (judge's pairs)": main["per_prompt_after"],
                f"control ({truth['control']['kind']})": control["per_prompt_after"]}
        ax.boxplot(list(runs.values()), showmeans=True)
        ax.set_xticks(range(1, len(runs) + 1), list(runs), fontsize=8)
        ax.set_title(f"{name}: p={_p(main['p'])} (DPO), p={_p(control['p'])} (control)", fontsize=10)
        ax.set_ylabel(GROUND_TRUTH_UNITS[name], fontsize=8)
    return _png(fig)


def ground_truth_lines(truth: dict) -> list[tuple[str, str]]:
    """The oracles' verdicts: judge against gold, then per stage 'better by ground truth' and the control."""
    if not truth:
        return []
    judge = truth["judge"]
    lines = [("judge vs gold (held-out)",
              f"pair accuracy {_fmt(judge.get('accuracy'))} (before training {_fmt(judge.get('accuracy_before'))}, "
              f"{judge.get('pairs')} pairs); point-score Spearman vs gold quality {_fmt(judge.get('spearman'))}")]
    for name in ("understanding", "generation"):
        for label, result in ((name, truth[name]), (f"{name} CONTROL", truth["control"][name])):
            verdict = "yes" if result["better"] else "no"
            lines.append((f"{label}: better by ground truth",
                          f"{verdict} (p={_p(result['p'])}): {GROUND_TRUTH_UNITS[name]} "
                          f"{_fmt(result['before'])} -> {_fmt(result['after'])}, "
                          f"{result['prompts_up']} up / {result['prompts_down']} down of {result['prompts']} prompts"))
        versus = truth["control"].get("dpo_vs_control", {}).get(name)
        if versus:
            lines.append((f"{name}: DPO better than the control",
                          f"{'yes' if versus['better'] else 'no'} (p={_p(versus['p'])}): "
                          f"{_fmt(versus['before'])} (control) vs {_fmt(versus['after'])} (DPO)"))
    return lines


def sift_figure(sift: dict) -> str | None:
    parts = {name: sift[name] for name in ("understanding", "generation") if sift.get(name, {}).get("chosen_scores")}
    if not parts:
        return None
    fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 3.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], parts.items()):
        ax.hist(result["chosen_scores"], bins=15, alpha=0.6, label="chosen")
        ax.hist(result["rejected_scores"], bins=15, alpha=0.6, label="rejected")
        ax.set_title(f"{name}: kept {result['kept']} / {result['total']} prompts", fontsize=10)
        ax.set_xlabel("point score")
        ax.legend(fontsize=8)
    return _png(fig)


def headline(summary: dict) -> list[tuple[str, str]]:
    """(label, value) lines shared by the terminal summary and the HTML table."""
    lines = ground_truth_lines(summary.get("ground_truth"))
    bench = summary.get("bench", {})
    if "before" in bench and "after" in bench:
        lines.append(("reward model accuracy (GenAI-Bench schema, diff)",
                      f"{_fmt(bench['before']['diff'])} -> {_fmt(bench['after']['diff'])} "
                      f"(failed {bench['before']['n_failed']} / {bench['after']['n_failed']} of {bench['rows']})"))
    warmstart = summary.get("sift", {}).get("policy_warmstart")
    if warmstart:
        lines.append(("policy warm-start SFT", f"{warmstart['steps']} steps on {warmstart['rows']} rows, "
                                               f"loss {warmstart['losses'][0]:.3g} -> {warmstart['losses'][-1]:.3g}"))
    for name in ("understanding", "generation"):
        if name not in summary.get("sift", {}):
            continue
        result = summary["sift"][name]
        lines.append((f"sift {name}", f"kept {result['kept']} of {result['total']} prompts "
                                      f"(dropped {result['dropped']}, failed {result['failed']})"))
    rescore = summary.get("rescore", {})
    for name in ("understanding", "generation"):
        if name not in rescore:
            continue
        result = rescore[name]
        verdict = "higher" if result["improved"] else "NOT significantly higher"
        delta = "n/a" if result["delta"] is None else f"{result['delta']:+.3g}"
        if result.get("delta_in_candidate_std") is not None:
            delta += f" = {result['delta_in_candidate_std']:+.2f} sd of the base candidates' scores"
        lines.append((f"held-out reward, {name}",
                      f"{_fmt(result['mean_before'])} -> {_fmt(result['mean_after'])} "
                      f"(delta {delta}, {result['prompts_improved']}/{result['prompts']} prompts up, "
                      f"sign test p={_fmt(result['sign_test_p'])}: aligned model scores {verdict})"))
    duel = rescore.get("generation_head_to_head")
    if duel:
        verdict = "prefers the aligned model" if duel["improved"] else "does NOT significantly prefer the aligned model"
        lines.append(("held-out head-to-head, generation",
                      f"judge picks the aligned image in {duel['aligned_wins']} of {duel['pairs']} same-seed pairs "
                      f"(both orders; base {duel['base_wins']}, failed {duel['failed']}); "
                      f"{duel['prompts_aligned_preferred']}/{duel['prompts']} prompts, "
                      f"sign test p={_fmt(duel['sign_test_p'])}: judge {verdict}"))
    for stage in summary.get("stages", []):
        lines.append((f"time: {stage['title']}", f"{stage['seconds']:.0f} s ({stage['cpu_seconds']:.0f} CPU s)"))
    lines.append(("time: total", f"{summary.get('total_seconds', 0):.0f} s ({summary.get('total_cpu_seconds', 0):.0f} CPU s)"))
    if "failed" in summary:
        lines.append(("FAILED", f"stage {summary['failed']['stage']}: log {summary['failed']['log']}"))
    return lines


def text_summary(summary: dict) -> str:
    width = max(len(label) for label, _ in headline(summary))
    return "\n".join(["", "UnifiedReward demo summary", *(f"  {label:<{width}}  {value}"
                                                           for label, value in headline(summary))])


def write_report(summary: dict, report_dir: Path, work_dir: Path | None = None) -> dict[str, Path]:
    """``summary.json`` and ``index.html``; with ``work_dir``, also the held-out media before/after alignment."""
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / "summary.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    figures = [
        ("Ground truth: held-out prompts scored by the toy world's oracles (not the judge)",
         ground_truth_figure(summary.get("ground_truth"))),
        ("Training losses", loss_figure(summary)),
        ("Reward-model benchmark accuracy, before and after training", bench_figure(summary.get("bench", {}))),
        ("Sifted preference pairs: chosen vs rejected scores", sift_figure(summary.get("sift", {}))),
        ("Held-out reward before and after DPO", reward_histograms(summary.get("rescore", {}))),
    ]
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
                   for label, value in headline(summary))
    commands = "".join(
        f"<li><code>{html.escape(c['command'])}</code> ({c['seconds']:.0f} s, log <code>{html.escape(c['log'])}</code>)</li>"
        for stage in summary.get("stages", []) for c in stage["commands"]
    )
    plots = "".join(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
                    for title, png in figures if png)
    media = media_sections(work_dir, report_dir) if work_dir is not None else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>UnifiedReward demo</title>
<style>{STYLE}body{{max-width:1100px;margin:2em auto;}}td{{padding:2px 12px;}}
code{{font-size:85%;}}img{{max-width:100%;}}</style></head><body>
<h1>UnifiedReward: the paper's three stages in miniature</h1>
<p>Reward-model training (LLaMA-Factory), benchmarking (<code>unifiedreward bench</code>), pair sifting
(<code>unifiedreward sift</code>, <code>sift_images</code>), DPO (TRL, Diffusion-DPO) and held-out re-scoring.
All numbers below were measured in this run; see <code>summary.json</code> for every value. The first lines and
the first plot are the ground truth (answers checked against the scene records, images measured from their pixels,
and a control run on the same pairs with chosen/rejected swapped); the judge's own view follows.</p>
<table>{rows}</table>{plots}{media}
<h2>Commands</h2><ol>{commands}</ol><script>{SCRIPT}</script></body></html>
"""
    html_path = report_dir / "index.html"
    html_path.write_text(page, encoding="utf-8")
    return {"html": html_path, "json": json_path}

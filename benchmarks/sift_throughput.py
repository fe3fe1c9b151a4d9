"""Sift throughput: upstream's ``DiffusionDPO/sift_dpo_data.py`` loop vs ``unifiedreward.sift`` (batched).

Per prompt, 10 candidate images: 5 disjoint pairs ranked (``dpo.image_generation.pair_rank``), all 10 point-scored
(``dpo.image_generation.point_score``, 1-10), best-scored winner vs worst-scored loser kept when strictly better.
Measured side by side in one run, threads pinned equally:

(a) upstream: one ``generate`` call at a time (5 pair calls, then 10 point calls per prompt) at upstream's
    ``max_new_tokens`` (4096), its parsing ("Image 2 is better than Image 1" substring, else image 1; the first
    integer after ``Final Score:`` kept as a string, else 0) and its choice (``max``/``min`` over those strings);
(b) ours, ``sift_item`` in generate mode (batched, media encoded once through the vision cache);
(c) ours, ``sift_item`` in logit mode.

The toy judge has random weights and would never stop or write a verdict, so every run here (upstream's loop
and ours alike) decodes under the same answer grammar (``prefix_allowed_tokens_fn``): the judge's own logits pick
one of the answers the template asks for, then EOS. The same judge outputs then go through both sift
algorithms; ``same_selection_fraction`` compares the selection (kept pair or dropped) over the prompts where
upstream's code hits none of its bugs (every pair decisive, every score parsed, string order = number order), and
``same_kept_pair_fraction`` over those of them where upstream kept a pair.

The saved toy judge (initializer_range 0.02) gives every candidate the same greedy answer, so both sides would
drop every prompt and the check would be vacuous. By default the benchmark therefore builds its own judge from
the toy judge's config with a different seed and a larger weight init (``--judge-seed``, ``--judge-init-std``:
11 and 0.15, picked from 48 (seed, std) pairs as one whose greedy answers change with the image and whose pair
verdicts mix "Image 1" and "Image 2"); ``--judge saved`` times the saved toy judge instead. Both sides always
run the same judge.

Counted per method: vision-tower calls and media through the tower (vs distinct images), prompt tokens prefilled.

    python benchmarks/sift_throughput.py --prompts 4 --json bench-out/sift.json           # CPU, toy world
    python benchmarks/sift_throughput.py --device cuda --dtype bfloat16 --config-7b --prompts 8
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from reward_core.backends.transformers_backend import TransformersBackend
from reward_core.model import UnifiedReward
from reward_core.prompts import get_template
from unifiedreward.sift import SiftItem, SiftSettings, disjoint_pairs, sift_item

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the same judge flags and the same toy / 7B-shaped model construction as the scoring benchmark
from scoring_throughput import (  # noqa: E402
    add_judge_arguments, build_model, model_label, parse_judge_arguments, random_judge,
)

PAIR_TEMPLATE, POINT_TEMPLATE = "dpo.image_generation.pair_rank", "dpo.image_generation.point_score"
PAIR_ANSWERS = ("Image 1 is better than Image 2.", "Image 2 is better than Image 1.", "Both images are equally good.")
POINT_ANSWERS = tuple(f"Final Score: {n}" for n in range(1, 11))
CANDIDATES = 10


# --------------------------------------------------------------------------- the judge's answer grammar


class AnswerGrammar:
    """``prefix_allowed_tokens_fn`` for ``generate``: after the assistant header, one of the template's answers
    token by token, then EOS. Pair prompts (two images) take :data:`PAIR_ANSWERS`, point prompts the scores."""

    def __init__(self, tokenizer: Any, eos_token_id: int, vision_start_id: int):
        self.header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        self.eos = eos_token_id[0] if isinstance(eos_token_id, (list, tuple)) else eos_token_id
        self.vision_start = vision_start_id
        self.tries = {
            2: self._trie(tokenizer, PAIR_ANSWERS),
            1: self._trie(tokenizer, POINT_ANSWERS),
        }

    def _trie(self, tokenizer: Any, answers: tuple[str, ...]) -> dict[tuple[int, ...], list[int]]:
        trie: dict[tuple[int, ...], set[int]] = {}
        for answer in answers:
            ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.eos]
            for depth in range(len(ids)):
                trie.setdefault(tuple(ids[:depth]), set()).add(ids[depth])
        return {prefix: sorted(next_ids) for prefix, next_ids in trie.items()}

    def __call__(self, batch_id: int, sequence: torch.Tensor) -> list[int]:
        tokens = sequence.tolist()
        width = len(self.header)
        start = next(i for i in range(len(tokens) - width, -1, -1) if tokens[i : i + width] == self.header) + width
        images = min(2, max(1, tokens[:start].count(self.vision_start)))
        return self.tries[images].get(tuple(tokens[start:]), [self.eos])


# --------------------------------------------------------------------------- counters


@dataclass
class Counts:
    tower_calls: int = 0
    media_through_tower: int = 0
    prompt_tokens: int = 0
    hooks: list = field(default_factory=list)

    def attach(self, model: Any) -> Counts:
        visual = model.model.visual

        def on_tower(_module, args, kwargs):
            grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
            self.tower_calls += 1
            self.media_through_tower += 0 if grid is None else int(grid.shape[0])

        def on_forward(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None or ids.shape[1] <= 1:
                return  # one decode step: not a prefill
            mask = kwargs.get("attention_mask")
            if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                self.prompt_tokens += int(mask[:, -ids.shape[1] :].sum())
            else:
                self.prompt_tokens += int(ids.numel())

        self.hooks = [
            visual.register_forward_pre_hook(on_tower, with_kwargs=True),
            model.register_forward_pre_hook(on_forward, with_kwargs=True),
        ]
        return self

    def detach(self) -> dict[str, int]:
        for hook in self.hooks:
            hook.remove()
        return {"tower_calls": self.tower_calls, "media_through_tower": self.media_through_tower, "prompt_tokens": self.prompt_tokens}


# --------------------------------------------------------------------------- upstream's sift, line for line


def upstream_generate(model, processor, text: str, images: list[Image.Image], max_new_tokens: int, grammar) -> str:
    """``inference_qwen``: one message with the images first, ``process_vision_info``, processor, generate."""
    from qwen_vl_utils import process_vision_info

    content = [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": text}]
    messages = [{"role": "user", "content": content}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image_inputs, video_inputs = process_vision_info(messages)
    inputs = processor(text=[prompt], images=image_inputs, videos=video_inputs, padding=True, return_tensors="pt")
    inputs = inputs.to(model.device)
    generated = model.generate(**inputs, max_new_tokens=max_new_tokens, prefix_allowed_tokens_fn=grammar)
    trimmed = [out[len(inp) :] for inp, out in zip(inputs.input_ids, generated)]
    return processor.batch_decode(trimmed, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]


@dataclass
class UpstreamOutcome:
    selection: tuple[int, int] | None  # (chosen, rejected) kept, else None
    bug_free: bool  # no fallback verdict, every score parsed, string order agrees with number order
    pair_texts: list[str]
    point_texts: list[str]


def upstream_sift(model, processor, caption: str, images: list[Image.Image], grammar) -> UpstreamOutcome:
    """``DiffusionDPO/sift_dpo_data.py``'s per-prompt body (with the Qwen call of ``inference_qwen``)."""
    pair_t, point_t = get_template(PAIR_TEMPLATE), get_template(POINT_TEMPLATE)
    bug_free = True
    chosen_list, rejected_list, pair_texts = [], [], []
    for a, b in disjoint_pairs(len(images)):
        text = upstream_generate(model, processor, pair_t.render(prompt=caption), [images[a], images[b]], pair_t.max_new_tokens, grammar)
        pair_texts.append(text)
        if "Image 2 is better than Image 1" in text:
            chosen_list.append(b), rejected_list.append(a)
        else:  # upstream: a tie or an unparsable answer makes image 1 the winner
            bug_free &= "Image 1 is better than Image 2" in text
            chosen_list.append(a), rejected_list.append(b)
    scores, point_texts = [], []
    for image in images:
        text = upstream_generate(model, processor, point_t.render(prompt=caption), [image], point_t.max_new_tokens, grammar)
        point_texts.append(text)
        numbers = re.findall(r"\d+", text.split("Final Score:")[-1])
        bug_free &= "Final Score:" in text and bool(numbers)
        scores.append(numbers[0] if numbers else 0)
    chosen_scores = [scores[i] for i in chosen_list]
    rejected_scores = [scores[i] for i in rejected_list]
    try:  # strings compared as strings, as upstream does (a fallback 0 among strings raises)
        chosen = chosen_list[chosen_scores.index(max(chosen_scores))]
        rejected = rejected_list[rejected_scores.index(min(rejected_scores))]
        numeric_chosen = chosen_list[[int(s) for s in chosen_scores].index(max(int(s) for s in chosen_scores))]
        numeric_rejected = rejected_list[[int(s) for s in rejected_scores].index(min(int(s) for s in rejected_scores))]
        bug_free &= (chosen, rejected) == (numeric_chosen, numeric_rejected)
        selection = (chosen, rejected) if int(scores[chosen]) > int(scores[rejected]) else None
    except TypeError:
        return UpstreamOutcome(None, False, pair_texts, point_texts)
    return UpstreamOutcome(selection, bug_free, pair_texts, point_texts)


# --------------------------------------------------------------------------- setup


def load_prompts(world: dict, prompts: int, image_size: int | None) -> list[tuple[str, list[Image.Image]]]:
    """``prompts`` captions with 10 distinct toy images each (reused round-robin when the world has fewer)."""
    root = Path(world["data_dir"])
    rows = [json.loads(line) for line in Path(world["data"]["image_points"]).read_text().splitlines()]
    out = []
    for p in range(prompts):
        chosen = [rows[(p * CANDIDATES + j) % len(rows)] for j in range(CANDIDATES)]
        images = [Image.open(root / row["image"]).convert("RGB") for row in chosen]
        if image_size:
            images = [image.resize((image_size, image_size)) for image in images]
        out.append((chosen[0]["prompt"], images))
    return out


def build_judge(args, world: dict):
    """The judge both sides run: the ``--shape mid / 7b`` or ``--model`` judge of the scoring benchmark, the saved toy
    judge (``--judge saved``), or (default) a benchmark-only judge from the toy judge's config with seed
    ``--judge-seed`` and every ``initializer_range`` set to ``--judge-init-std``. Returns (model, processor, label)."""
    from transformers import AutoProcessor, GenerationConfig

    if args.shape != "toy" or args.model or args.judge == "saved":
        model, processor = build_model(args, world)
        return model, processor, model_label(args) + (" (saved)" if args.shape == "toy" and not args.model else "")
    init = {"initializer_range": args.judge_init_std}
    model = random_judge(args, world, {"": init, "text_config": init, "vision_config": init}, seed=args.judge_seed)
    model.generation_config = GenerationConfig.from_pretrained(world["reward_model"])
    label = f"toy qwen2.5-vl config, random init seed {args.judge_seed}, initializer_range {args.judge_init_std}"
    return model, AutoProcessor.from_pretrained(world["reward_model"]), label


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def run(args) -> dict:
    from unifiedreward.toy import build_world, load_world

    world_dir = args.world or os.path.join(tempfile.gettempdir(), "unifiedreward-bench-world")
    world = load_world(world_dir) or build_world(world_dir)
    model, processor, judge = build_judge(args, world)
    tokenizer = processor.tokenizer
    grammar = AnswerGrammar(tokenizer, model.generation_config.eos_token_id, model.config.vision_start_token_id)
    backend = TransformersBackend(
        model, processor, batch_size=args.batch_size, generate_kwargs={"prefix_allowed_tokens_fn": grammar},
        vision_cache=not args.no_vision_cache,
    )
    cache = backend.vision_cache
    rm = UnifiedReward(backend, batch_size=args.batch_size, chunk_size=4 * CANDIDATES)
    data = load_prompts(world, args.prompts, args.image_size)
    distinct = len({image.tobytes() for _, images in data for image in images})
    items = lambda: [  # noqa: E731 (fresh items per method: sift_item fills nothing in, but keep runs independent)
        SiftItem(id=str(i), fields={"prompt": caption}, candidates=list(images), order=i) for i, (caption, images) in enumerate(data)
    ]

    # warm-up on one prompt (kernels, lazy imports); the cache starts empty for the measured runs
    upstream_generate(model, processor, "warm up", data[0][1][:1], 2, grammar)
    for mode in ("generate", "logit"):
        sift_item(rm, items()[0], SiftSettings(PAIR_TEMPLATE, POINT_TEMPLATE, mode=mode))
    if cache is not None:
        cache.clear()

    report: dict[str, Any] = {
        "device": args.device, "dtype": args.dtype, "attn": model.config._attn_implementation,
        "threads": torch.get_num_threads(),
        "model": judge,
        "prompts": args.prompts, "candidates_per_prompt": CANDIDATES, "distinct_media": distinct,
        "batch_size": args.batch_size, "image_size": args.image_size, "vision_cache": cache is not None,
        "templates": [PAIR_TEMPLATE, POINT_TEMPLATE],
        "upstream_max_new_tokens": get_template(PAIR_TEMPLATE).max_new_tokens,
        "decoding": "greedy under each template's answer grammar (random weights), all methods, the same judge",
        "methods": {},
    }  # fmt: skip

    counts = Counts().attach(model)
    upstream, seconds = timed(lambda: [upstream_sift(model, processor, c, imgs, grammar) for c, imgs in data])
    report["methods"]["upstream_loop"] = {"seconds": round(seconds, 3), **counts.detach()}

    ours: dict[str, list] = {}
    for mode in ("generate", "logit"):
        if cache is not None:
            cache.clear()
            cache.reset_stats()
        counts = Counts().attach(model)
        settings = SiftSettings(PAIR_TEMPLATE, POINT_TEMPLATE, mode=mode)
        ours[mode], seconds = timed(lambda: [sift_item(rm, item, settings) for item in items()])
        report["methods"][f"batched_{mode}"] = {"seconds": round(seconds, 3), **counts.detach(),
                                              "vision_cache": cache.stats.as_dict() if cache else None}
    for name, entry in report["methods"].items():
        entry["prompts_per_s"] = round(args.prompts / entry["seconds"], 3)
        entry["tower_media_per_distinct_medium"] = round(entry["media_through_tower"] / distinct, 3)
    base = report["methods"]["upstream_loop"]["seconds"]
    report["sift_speedup_generate"] = round(base / report["methods"]["batched_generate"]["seconds"], 2)
    report["sift_speedup_logit"] = round(base / report["methods"]["batched_logit"]["seconds"], 2)

    def selection(record) -> tuple[int, int] | None:
        return (record.chosen_index, record.rejected_index) if record.status == "kept" else None

    clean = [i for i, outcome in enumerate(upstream) if outcome.bug_free]
    clean_kept = [i for i in clean if upstream[i].selection is not None]
    report["upstream_bug_free_prompts"] = len(clean)
    report["upstream_bug_free_kept"] = len(clean_kept)
    for mode, suffix in (("generate", ""), ("logit", "_logit")):
        for key, prompts in (("same_selection_fraction", clean), ("same_kept_pair_fraction", clean_kept)):
            same = [upstream[i].selection == selection(ours[mode][i]) for i in prompts]
            report[key + suffix] = round(sum(same) / len(same), 3) if same else None
    report["same_judge_texts_generate"] = round(
        sum(u.pair_texts == [p.text for p in r.pairs] and u.point_texts == r.point_texts for u, r in zip(upstream, ours["generate"]))
        / len(upstream),
        3,
    )
    report["selections"] = {  # per prompt: [chosen, rejected] or None (dropped)
        "upstream_loop": [u.selection for u in upstream],
        **{f"batched_{mode}": [selection(r) for r in records] for mode, records in ours.items()},
    }
    report["kept"] = {
        "upstream_loop": sum(u.selection is not None for u in upstream),
        **{f"batched_{mode}": sum(r.status == "kept" for r in records) for mode, records in ours.items()},
    }
    return report


def table(report: dict) -> str:
    lines = [
        f"sift: {report['model']} on {report['device']} ({report['dtype']}, {report['threads']} threads), "
        f"{report['prompts']} prompts x {report['candidates_per_prompt']} candidates, {report['distinct_media']} distinct images",
        f"{'method':<16} {'seconds':>8} {'prompts/s':>10} {'speedup':>8} {'tower calls':>12} {'media/distinct':>15} {'prompt tokens':>14} {'kept':>5}",
    ]
    base = report["methods"]["upstream_loop"]["seconds"]
    for name, m in report["methods"].items():
        lines.append(
            f"{name:<16} {m['seconds']:>8.2f} {m['prompts_per_s']:>10.3f} {base / m['seconds']:>7.1f}x {m['tower_calls']:>12} "
            f"{m['tower_media_per_distinct_medium']:>15.2f} {m['prompt_tokens']:>14} {report['kept'][name]:>5}"
        )
    lines.append(
        f"same selection as upstream on its {report['upstream_bug_free_prompts']} bug-free prompts: generate "
        f"{report['same_selection_fraction']}, logit {report['same_selection_fraction_logit']}; same kept pair on the "
        f"{report['upstream_bug_free_kept']} of them upstream kept: generate {report['same_kept_pair_fraction']}, "
        f"logit {report['same_kept_pair_fraction_logit']}; identical judge texts (generate): {report['same_judge_texts_generate']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_judge_arguments(parser)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--judge", choices=("bench", "saved"), default="bench",
                        help="toy size: the benchmark's discriminating judge (default) or the saved toy judge")
    parser.add_argument("--judge-seed", type=int, default=11, help="seed of the benchmark judge's random init")
    parser.add_argument("--judge-init-std", type=float, default=0.15, help="initializer_range of the benchmark judge")
    parser.add_argument("--no-vision-cache", action="store_true", help="ours without the vision cache (A/B)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parse_judge_arguments(parser, argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    report = run(args)
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

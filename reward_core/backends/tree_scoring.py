"""Next-symbol distributions at every node of a score trie from one prefill and one small tree step.

The context (prompt + media + answer prefix) runs once, keeping its KV cache; the trie's nodes then go in
as one flattened sequence of single tokens, each attending to the context and to its own ancestors only
(a 4D attention mask) at the position it would have in a plain answer. The vision tower and the context
run once per item, whatever the number of nodes (52 on 1-5 with two decimals, 102 on 0-100).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from reward_core.logit import answer_text
from reward_core.score_trie import SYMBOLS

TREE_ATTENTION = ("eager", "sdpa")  # implementations that take a custom 4D mask


@dataclass(frozen=True)
class TreeLayout:
    """Token layout of a trie after one answer prefix."""

    shared: tuple[int, ...]  # prefix tokens (and e.g. the space) before the first digit
    symbol_ids: dict[str, int]  # "0".."9", "." -> token id
    nodes: tuple[str, ...]  # root first
    parents: tuple[int, ...]  # index in ``nodes`` of each non-root node's parent

    @property
    def tokens(self) -> list[int]:
        """The token of each non-root node (its last symbol)."""
        return [self.symbol_ids[n[-1]] for n in self.nodes[1:]]

    def ancestors(self) -> torch.Tensor:
        """``[i, j]`` True when tree token ``j`` is token ``i`` or one of its ancestors."""
        size = len(self.nodes) - 1
        allowed = torch.eye(size, dtype=torch.bool)
        for i in range(size):
            parent = self.parents[i]
            while parent > 0:
                allowed[i, parent - 1] = True
                parent = self.parents[parent - 1]
        return allowed

    def depths(self) -> torch.Tensor:
        return torch.tensor([len(n) for n in self.nodes[1:]])


def tree_layout(tokenizer: Any, prefix: str, nodes: tuple[str, ...]) -> TreeLayout:
    """Check that digits and "." are single tokens after ``prefix`` and lay the trie out.

    Raises ``ValueError`` for a tokenizer that merges digits (the trie needs one token per symbol).
    """

    def ids(answer: str) -> list[int]:
        return tokenizer(answer_text(prefix, answer), add_special_tokens=False)["input_ids"]

    one = ids("1")
    shared = tuple(one[:-1])
    symbol_ids = {"1": one[-1]}
    for digit in "023456789":
        tokens = ids(digit)
        if tuple(tokens[:-1]) != shared:
            raise ValueError(f"answer {digit!r} after {prefix!r} does not share the prefix tokens of '1'")
        symbol_ids[digit] = tokens[-1]
    dotted = ids("1.5")
    symbol_ids["."] = dotted[-2] if len(dotted) == len(one) + 2 else -1
    for node in nodes[1:]:
        for symbol in SYMBOLS:
            expected = [*shared, *(symbol_ids[c] for c in node + symbol)]
            if symbol == "." and "." in node:
                continue
            if ids(node + symbol) != expected:
                raise ValueError(
                    f"the tokenizer does not write {node + symbol!r} one token per character after {prefix!r}; "
                    "decimal logit scores need digit-split tokens (Qwen tokenizers split digits)"
                )
    index = {node: i for i, node in enumerate(nodes)}
    parents = tuple(index[node[:-1]] for node in nodes[1:])
    return TreeLayout(shared, symbol_ids, tuple(nodes), parents)


def tree_step_inputs(
    layout: TreeLayout, attention_mask: torch.Tensor, rope_deltas: torch.Tensor | None, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """``input_ids``, 4D additive ``attention_mask`` and 3D (M-RoPE) ``position_ids`` for the tree step after a
    left-padded prefill with ``attention_mask`` (batch, context length)."""
    batch, context = attention_mask.shape
    size = len(layout.nodes) - 1
    device = attention_mask.device
    allowed = torch.cat(
        [attention_mask.bool()[:, None, :].expand(batch, size, context), layout.ancestors().to(device).expand(batch, size, size)],
        dim=-1,
    )[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    if rope_deltas is not None:  # the model's own decode rule: positions of real tokens plus its M-RoPE offset
        base = attention_mask.long().sum(-1) + rope_deltas.view(-1).to(device)
    else:
        base = torch.full((batch,), context, device=device)
    positions = base[:, None] + layout.depths().to(device)[None, :] - 1
    return {
        "input_ids": torch.tensor([layout.tokens], device=device).expand(batch, size),
        "attention_mask": mask,
        "position_ids": positions[None].expand(3, batch, size),
    }


def rope_holder(model: Any) -> Any | None:
    """The submodule that caches M-RoPE ``rope_deltas`` (Qwen2.5-VL / Qwen3-VL), if any."""
    for module in (getattr(model, "model", None), model):
        if module is not None and hasattr(module, "rope_deltas"):
            return module
    return None


@torch.inference_mode()
def node_log_probs(model: Any, batch: dict[str, Any], layout: TreeLayout) -> list[dict[str, dict[str, float]]]:
    """Per row of ``batch`` (contexts ending with ``layout.shared``): log P(symbol | node) at every node."""
    holder = rope_holder(model)
    if holder is not None:
        holder.rope_deltas = None  # a stale offset from an earlier call must not leak into this prefill
    prefill = model(**batch, use_cache=True, logits_to_keep=1)
    root = torch.log_softmax(prefill.logits[:, -1].float(), dim=-1)
    step = tree_step_inputs(layout, batch["attention_mask"], getattr(holder, "rope_deltas", None), prefill.logits.dtype)
    step["attention_mask"] = step["attention_mask"].to(model.dtype)
    implementation = getattr(model.config, "_attn_implementation", "eager")
    switch = implementation not in TREE_ATTENTION
    if switch:  # e.g. flash_attention_2 takes no custom mask: the (short) tree step runs under sdpa
        model.set_attn_implementation("sdpa")
    try:
        tree = model(**step, past_key_values=prefill.past_key_values, use_cache=True)
    finally:
        if switch:
            model.set_attn_implementation(implementation)
    logprobs = torch.log_softmax(tree.logits.float(), dim=-1)
    ids = torch.tensor([layout.symbol_ids[s] for s in SYMBOLS if layout.symbol_ids[s] >= 0])
    names = [s for s in SYMBOLS if layout.symbol_ids[s] >= 0]
    rows = []
    for row in range(root.shape[0]):
        table = torch.cat([root[row : row + 1], logprobs[row]], dim=0)[:, ids].cpu().tolist()
        rows.append({node: dict(zip(names, values)) for node, values in zip(layout.nodes, table)})
    return rows

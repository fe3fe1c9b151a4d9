"""Next-symbol distributions at every node of a score trie from one prefill and one small tree step.

The context (prompt + media + answer prefix) runs once, keeping its KV cache; the trie's nodes then go in
as one flattened sequence of single tokens, each attending to the context and to its own ancestors only
(a 4D attention mask) at the position it would have in a plain answer. The vision tower and the context
run once per item, whatever the number of nodes (52 on 1-5 with two decimals, 102 on 0-100).

Models with recurrent (linear-attention) layers, such as Qwen3.5's Gated DeltaNet, cannot take a tree mask:
their state runs through every token in order. For them each deepest branch (a few tokens) runs on its own
copy of the prefill cache instead: still one vision tower and context pass per item.
"""

from __future__ import annotations

import copy
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

    def branches(self) -> list[str]:
        """Deepest nodes: running each one's symbols after the context exposes every node's distribution."""
        return [n for n in self.nodes[1:] if not any(m != n and m.startswith(n) for m in self.nodes)]


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


def positions_after(attention_mask: torch.Tensor, rope_deltas: torch.Tensor | None, depths: torch.Tensor) -> torch.Tensor:
    """3D (M-RoPE) positions of tokens at ``depths`` (1 = right after the context) after a left-padded prefill:
    the model's own decode rule, real-token count plus its M-RoPE offset."""
    batch, context = attention_mask.shape
    device = attention_mask.device
    if rope_deltas is not None:
        base = attention_mask.long().sum(-1) + rope_deltas.view(-1).to(device)
    else:
        base = torch.full((batch,), context, device=device)
    positions = base[:, None] + depths.to(device)[None, :] - 1
    return positions[None].expand(3, batch, depths.numel())


def recurrent(model: Any) -> bool:
    """Whether the language model has non-attention (linear / recurrent) layers."""
    config = getattr(model.config, "text_config", model.config)
    return any(t not in ("full_attention", "sliding_attention") for t in getattr(config, "layer_types", None) or ())


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
    return {
        "input_ids": torch.tensor([layout.tokens], device=device).expand(batch, size),
        "attention_mask": mask,
        "position_ids": positions_after(attention_mask, rope_deltas, layout.depths()),
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
    deltas = getattr(holder, "rope_deltas", None)
    if recurrent(model):
        logprobs = _branch_log_probs(model, batch["attention_mask"], prefill.past_key_values, deltas, layout)
    else:
        logprobs = _tree_log_probs(model, batch["attention_mask"], prefill.past_key_values, deltas, layout)
    ids = torch.tensor([layout.symbol_ids[s] for s in SYMBOLS if layout.symbol_ids[s] >= 0])
    names = [s for s in SYMBOLS if layout.symbol_ids[s] >= 0]
    rows = []
    for row in range(root.shape[0]):
        table = torch.cat([root[row : row + 1], logprobs[row]], dim=0)[:, ids].cpu().tolist()
        rows.append({node: dict(zip(names, values)) for node, values in zip(layout.nodes, table)})
    return rows


def _branch_log_probs(model, attention_mask, cache, rope_deltas, layout: TreeLayout) -> torch.Tensor:
    """(batch, nodes - 1, vocab) log-probabilities, one branch at a time on a copy of the prefill cache."""
    batch = attention_mask.shape[0]
    index = {node: i for i, node in enumerate(layout.nodes[1:])}
    out: torch.Tensor | None = None
    for branch in layout.branches():
        tokens = torch.tensor([[layout.symbol_ids[c] for c in branch]], device=attention_mask.device).expand(batch, -1)
        mask = torch.cat([attention_mask, torch.ones_like(tokens)], dim=-1)
        depths = torch.arange(1, len(branch) + 1)
        logits = model(
            input_ids=tokens, attention_mask=mask, position_ids=positions_after(attention_mask, rope_deltas, depths),
            past_key_values=copy.deepcopy(cache), use_cache=True,
        ).logits  # fmt: skip
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if out is None:
            out = torch.empty(batch, len(layout.nodes) - 1, logprobs.shape[-1], device=logprobs.device)
        for depth in range(len(branch)):
            out[:, index[branch[: depth + 1]]] = logprobs[:, depth]
    return out


def _tree_log_probs(model, attention_mask, cache, rope_deltas, layout: TreeLayout) -> torch.Tensor:
    """(batch, nodes - 1, vocab) log-probabilities from one tree-attention step on the prefill cache."""
    step = tree_step_inputs(layout, attention_mask, rope_deltas, model.dtype)
    implementation = getattr(model.config, "_attn_implementation", "eager")
    switch = implementation not in TREE_ATTENTION
    if switch:  # e.g. flash_attention_2 takes no custom mask: the (short) tree step runs under sdpa
        model.set_attn_implementation("sdpa")
    try:
        tree = model(**step, past_key_values=cache, use_cache=True)
    finally:
        if switch:
            model.set_attn_implementation(implementation)
    return torch.log_softmax(tree.logits.float(), dim=-1)

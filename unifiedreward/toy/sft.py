"""Supervised batches for the toy VLMs: prompts built as ``unifiedreward sift`` builds them, loss on the answer only."""

from __future__ import annotations

from pathlib import Path


def encode(processor, rows: list[dict], media_dir: Path):
    """A padded batch of ``{"image", "question", "answer"}`` rows with ``labels`` = answer tokens (prompt and padding
    masked with -100); ``image`` is relative to ``media_dir``."""
    from reward_core.media import build_messages

    prompts, fulls, images = [], [], []
    for row in rows:
        messages = build_messages([str(media_dir / row["image"])], row["question"])
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        answer = [{"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]}]
        full = processor.apply_chat_template(messages + answer, tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("chat template of prompt + answer does not extend the prompt")
        prompts.append(prompt)
        fulls.append(full.rstrip("\n"))
        images.append(messages[0]["content"][0]["image"])
    batch = processor(images=images, text=fulls, padding=True, padding_side="right", return_tensors="pt")
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    for index, (prompt, image) in enumerate(zip(prompts, images)):
        prompt_length = processor(images=[image], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
        labels[index, :prompt_length] = -100
    batch["labels"] = labels
    return batch


def answer_log_likelihood(model, batch):
    """Per row, the summed log-probability of its answer tokens under ``model`` (``batch`` from :func:`encode`)."""
    import torch

    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    token_lp = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return (token_lp * mask).sum(1)

"""Tiny byte-level BPE tokenizers trained offline: a Qwen2 one (for the VLMs) and a CLIP one (for SD)."""

from __future__ import annotations

import json
import string
from importlib import resources
from pathlib import Path

import regex
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from .data import QUESTIONS
from .scenes import BACKGROUNDS, COLOURS, DIRECTIONS, POSITIONS, SHAPES, Scene

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
# Qwen2's pre-tokenizer: digits are split one per token.
QWEN_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CLIP_SPLIT_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"

JUDGE_OUTPUTS: tuple[str, ...] = (
    "Image 1 is better.", "Image 2 is better.", "Both images are equally good.",
    "Image 1 is better than Image 2.", "Image 2 is better than Image 1.",
    "Video 1 is better.", "Video 2 is better.", "Both videos are equally good.",
    "Answer 1 is better.", "Answer 2 is better.", "Both answers are equally good.",
    "Overall Judgment: Answer 1 is better than Answer 2.", "Overall Judgment: Answer 2 is better than Answer 1.",
    "Final Score: 1", "Final Score: 2", "Final Score: 3", "Final Score: 4", "Final Score: 5",
    "Final Score: 7.5", "Final Score: 85", "Final Score: 100",
    "Alignment Score: 4\nCoherence Score: 3\nStyle Score: 5\nFinal Score: 4",
    "Alignment Score (1-5): 4\nPlausibility Score (1-5): 3\nAesthetics Score (1-5): 5",
    "Image 1: Alignment 4/5, Coherence 3/5. Image 2: Alignment 2/5, Coherence 3/5.",
    "<think>The caption asks for a red circle. Image 1 shows a red circle; Image 2 shows a blue circle.</think>\n"
    "<answer>Image 1 is better.</answer>",
    "<think>\nAnswer 2 names the right colour.\n</think>\n<answer>Answer 2 is better.</answer>",
    "The image matches the caption, so the score is high. Final Score: 5",
)


def _render_upstream_templates() -> list[str]:
    raw = resources.files("reward_core").joinpath("data/upstream-prompts.json").read_text(encoding="utf-8")
    values = {
        "prompt": "a red circle on the left", "question": QUESTIONS[0].text, "answer1": "The shape is red.",
        "answer2": "The shape is blue.", "response": "The shape is red.", "instruction": "make the circle blue",
        "image_tokens": "<image>",
    }
    texts = []
    for entry in json.loads(raw).values():
        fields = {name for _, name, _, _ in string.Formatter().parse(entry["template"]) if name}
        texts.append(entry["template"].format(**{name: values.get(name, name) for name in fields}))
        texts.append(entry.get("output", ""))
    return texts


def scene_texts() -> list[str]:
    """Every toy caption (image and video) and every question with its answer, for tokenizer training."""
    texts = []
    for colour in COLOURS:
        for shape in SHAPES:
            for position in POSITIONS:
                texts.append(Scene(colour, shape, position).caption())
            for direction in DIRECTIONS:
                texts.append(Scene(colour, shape, direction=direction).video_caption())
            scene = Scene(colour, shape)
            texts.extend(question.text + " " + question.answer(scene) for question in QUESTIONS)
    texts.append(" ".join(BACKGROUNDS))
    return texts


def training_corpus() -> list[str]:
    """Templates rendered with toy values, toy captions/questions/answers and typical judge outputs."""
    return _render_upstream_templates() + scene_texts() + list(JUDGE_OUTPUTS) + ["You are a helpful assistant."]


# Training runs until no pair is left to merge: a vocabulary cut-off would break ties between equally
# frequent pairs in a process-dependent order and make builds non-deterministic.
_EXHAUSTIVE_VOCAB = 1 << 20


def train_qwen_tokenizer() -> Tokenizer:
    """Byte-level BPE with Qwen2's pre-tokenizer and decoder; Qwen's special tokens are appended last.

    The toy corpus yields a vocabulary of roughly 2.8k tokens.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_EXHAUSTIVE_VOCAB,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer=trainer)
    tokenizer.add_special_tokens(list(QWEN_SPECIAL_TOKENS))
    return tokenizer


def save_qwen_tokenizer(tokenizer: Tokenizer, out_dir: Path, chat_template: str) -> None:
    """Write tokenizer.json + vocab.json/merges.txt + tokenizer_config.json the way Qwen2.5-VL ships them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    tokenizer.model.save(str(out_dir))
    added = {
        str(tokenizer.token_to_id(token)): {
            "content": token, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True,
        }
        for token in QWEN_SPECIAL_TOKENS
    }
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": [token for token in QWEN_SPECIAL_TOKENS[1:]],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 32768,
        "chat_template": chat_template,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's printable stand-in for each byte value; iteration order is CLIP's vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    mapping, extra = {byte: chr(byte) for byte in printable}, 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def _clip_words(texts: list[str], byte_symbols: dict[int, str], final_symbols: dict[int, str]) -> list[str]:
    """CLIP pre-tokenization (lower-case, regex split, byte symbols) with each word's last symbol marked final."""
    words = []
    for text in texts:
        for word in regex.findall(CLIP_SPLIT_REGEX, text.lower()):
            encoded = word.encode("utf-8")
            words.append("".join(byte_symbols[byte] for byte in encoded[:-1]) + final_symbols[encoded[-1]])
    return words


def build_clip_vocab(texts: list[str]) -> tuple[dict[str, int], list[str]]:
    """CLIP-style vocab/merges: 256 byte symbols, the same with ``</w>``, learned merges, then BOS/EOS.

    ``tokenizers`` learns the merges on words whose final symbol is a private-use stand-in for
    ``symbol</w>``, so the whole alphabet is known up front and training is deterministic.
    """
    byte_symbols = _bytes_to_unicode()
    final_symbols = {byte: chr(0xE000 + byte) for byte in byte_symbols}
    restore = {final_symbols[byte]: symbol + "</w>" for byte, symbol in byte_symbols.items()}

    trainer_tokenizer = Tokenizer(models.BPE())
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=_EXHAUSTIVE_VOCAB, min_frequency=1,
        initial_alphabet=list(byte_symbols.values()) + list(final_symbols.values()),
        show_progress=False,
    )
    trainer_tokenizer.train_from_iterator(_clip_words(texts, byte_symbols, final_symbols), trainer=trainer)

    def to_clip(piece: str) -> str:
        return piece[:-1] + restore[piece[-1]] if piece[-1] in restore else piece

    learned = json.loads(trainer_tokenizer.to_str())["model"]["merges"]
    pairs = [pair if isinstance(pair, list) else pair.split(" ") for pair in learned]
    merges = [f"{to_clip(left)} {to_clip(right)}" for left, right in pairs]
    vocab_tokens = list(byte_symbols.values()) + [symbol + "</w>" for symbol in byte_symbols.values()]
    vocab_tokens += [to_clip(left + right) for left, right in pairs] + [CLIP_BOS, CLIP_EOS]
    return {token: index for index, token in enumerate(vocab_tokens)}, merges


def save_clip_tokenizer(out_dir: Path, texts: list[str], max_length: int = 77) -> int:
    """Write vocab.json, merges.txt and tokenizer_config.json for ``CLIPTokenizer``; returns the vocab size."""
    vocab, merges = build_clip_vocab(texts)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer", "bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "pad_token": CLIP_EOS,
        "unk_token": CLIP_EOS, "model_max_length": max_length, "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return len(vocab)

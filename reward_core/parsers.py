"""Parsers that turn UnifiedReward's generated text into a `RewardResult`.

One parser per upstream output format (upstream-unifiedreward.md §(a)); each is registered in
`PARSERS` under the name a `Template.parser` refers to. Parsers never raise on any text and
never invent a verdict: text they cannot read gives ``status=parse_error`` with the reason.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from reward_core.results import RewardResult, Status

__all__ = ["PARSERS", "NumberError", "parse", "parse_for", "read_number", "register_parser"]

logger = logging.getLogger(__name__)

Parser = Callable[[str], RewardResult]
PARSERS: dict[str, Parser] = {}

# A number as written, taken whole so that nothing of it is silently cut off: sign (\u2212 = typographic
# minus), digits (any script), decimal or comma groups, exponent, then an optional range ("3-4") or
# fraction ("4/5"). `read_number` decides what it means; `_LIST_NUMBER` is one element of "[a, b]".
_NUMBER = (
    r"[-+\u2212]?\d+(?:[.,]\d+)*(?:[eE][-+\u2212]?\d+)?"
    r"(?:[-\u2013]\d+(?:\.\d+)?|\s*/\s*\d+(?:[.,]\d+)*)?(?![\d])"
)
_LIST_NUMBER = r"[-+\u2212]?\d+(?:\.\d+)?(?:[eE][-+\u2212]?\d+)?(?![\d.])"


class NumberError(ValueError):
    """A number in the output that cannot be read as one value (the reason says why)."""


def _ok(text: str, **values: Any) -> RewardResult:
    return RewardResult(status=Status.OK, text=text, **values)


def _fail(text: str | None, error: str, **values: Any) -> RewardResult:
    return RewardResult(status=Status.PARSE_ERROR, text=text, error=error, **values)


def _ascii_digits(raw: str) -> str:
    """``raw`` with its digits in ASCII; digits from two scripts ("4\u0665") are not one number."""
    zeros = {ord(ch) - unicodedata.decimal(ch) for ch in raw if ch.isdecimal()}
    if len(zeros) > 1:
        raise NumberError(f"{raw!r} mixes digits of different scripts")
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in raw)


def read_number(raw: str, high: float | None = None) -> float:
    """The value a reader reads in ``raw`` (matched by ``_NUMBER``), or :class:`NumberError`.

    ``1e-3`` is 0.001 and Unicode digits count. Refused rather than guessed: a comma ("4,5": decimal comma
    or a list?), a range ("3-4"), a fraction whose denominator is not the scale's top ``high`` ("3/10" on
    a 1-5 scale; "4/5" on it is 4) and numbers too large for a float.
    """
    text = _ascii_digits(raw.strip().replace("\u2212", "-"))
    value, slash, denominator = (part.strip() for part in text.partition("/"))
    if slash:
        if "," in denominator or high is None or float(denominator) != high:
            scale = "this output" if high is None else f"a scale up to {high:g}"
            raise NumberError(f"fraction {raw.strip()!r} is not on {scale}")
    if "," in value:
        raise NumberError(f"{raw.strip()!r} has a comma (decimal comma or a list?); not read")
    if re.fullmatch(r"[-+]?\d+(?:\.\d+)?[-\u2013]\d+(?:\.\d+)?", value):
        raise NumberError(f"{raw.strip()!r} is a range, not one score")
    try:
        number = float(value)
    except ValueError:
        raise NumberError(f"{raw.strip()!r} is not a number") from None
    if not math.isfinite(number):
        raise NumberError(f"{raw.strip()[:20]!r}... is too large to be a score")
    return number


def _to_float(raw: str) -> float:
    return read_number(raw)


def _numbers_read(parser: Parser) -> Parser:
    """A parser whose unreadable number gives ``parse_error`` with the reason."""

    def guarded(text: str) -> RewardResult:
        try:
            return parser(text)
        except NumberError as error:
            return _fail(text, f"unreadable number: {error}")

    guarded.__name__ = getattr(parser, "__name__", "parser")
    guarded.__doc__ = parser.__doc__
    return guarded


def _snippet(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- pair rank
_SUBJECTS = {
    "image": r"image",
    "video": r"video",
    "answer": r"answer|response",
    "edited_image": r"(?:edited\s+)?image",
    "any": r"(?:edited\s+)?image|video|answer|response",
}
_PLURALS = {
    "image": r"images",
    "video": r"videos",
    "answer": r"answers|responses",
    "edited_image": r"(?:edited\s+)?images",
    "any": r"(?:edited\s+)?images|videos|answers|responses",
}
_ADVERBS = r"(?:(?:clearly|slightly|much|significantly|overall|definitely|generally|marginally|somewhat)\s+)*"
# Two verdicts separated only by quotes/commas/"and"/"or" are an enumeration (an echo of the
# prompt's 'such as "Image 1 is better.", "Image 2 is better."'), not a decision.
_GAP_CHARS = r"[\s\"'`*,.;:/()\[\]\u201c\u201d\u2018\u2019-]*"
_ENUMERATION_GAP = re.compile(rf"{_GAP_CHARS}(?:(?:and|or)\b{_GAP_CHARS})?", re.IGNORECASE)
_ENUMERATION_MARK = re.compile(r"[\"'`,/\u201c\u201d\u2018\u2019]|\b(?:and|or)\b", re.IGNORECASE)


def _conclusion_pattern(subject_key: str) -> re.Pattern[str]:
    subject = _SUBJECTS[subject_key]
    win = (
        rf"\b(?:{subject})\s*(?P<n>[12])\b\**\s*(?:is|was)\s+{_ADVERBS}"
        r"(?:the\s+)?(?:better|superior|preferred|preferable)"
        rf"(?:\s+(?:one|choice|option))?(?:\s+than\s+(?:the\s+)?(?:{subject})\s*(?P<other>[12])\b)?"
    )
    tie = rf"\bboth\s+(?:{_PLURALS[subject_key]})\s+are\s+(?P<tie>equally\s+good|equally\s+(?:strong|matched)|equal)"
    ordinal = ""
    if subject_key in ("answer", "any"):
        ordinal = r"|\bthe\s+(?P<ord>first|second)\s+(?:response|answer)\s+is\s+" + _ADVERBS + r"better"
    return re.compile(f"{win}|{tie}{ordinal}", re.IGNORECASE)


_CONCLUSIONS = {key: _conclusion_pattern(key) for key in _SUBJECTS}
_OVERALL_JUDGMENT = re.compile(r"overall\s+judge?ment", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)


def _verdict(match: re.Match[str]) -> int | None:
    """Winner named by one conclusion match: 1, 2, 0 (tie) or None (self-contradicting)."""
    if match.group("tie"):
        return 0
    groups = match.groupdict()
    if groups.get("ord"):
        return 1 if groups["ord"].lower() == "first" else 2
    winner, other = int(match.group("n")), match.group("other")
    if other is not None and int(other) == winner:
        return None  # "Image 1 is better than Image 1"
    return winner


# "Although Image 1 is better in color, Image 2 is better." : a conceded or scoped comparison is not the verdict.
_CONCESSION = re.compile(
    r"\b(?:although|though|while|whereas|even\s+if|despite|admittedly|granted|albeit)\b", re.IGNORECASE
)
_SCOPE = re.compile(
    r"\s*(?:in\s+terms\s+of|in|at|for|on|regarding|concerning|with\s+respect\s+to|when\s+it\s+comes\s+to)\b"
    r"(?!\s+(?:all|every|most|overall|general)\b)",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[,;:!?\n]|\.(?=\s|$)")


def _conceded_flags(region: str, matches: list[re.Match[str]]) -> list[bool]:
    """Per conclusion: whether it sits in a concessive clause ("although Image 1 is better in X, ...").

    The clause runs from the concessive word to the next comma or sentence end. Linear in the region.
    """
    clause_ends = [m.end() for m in _CLAUSE_END.finditer(region)]
    concessions = [m.start() for m in _CONCESSION.finditer(region)]
    flags = []
    for match in matches:
        before = bisect.bisect_right(clause_ends, match.start())
        clause_start = clause_ends[before - 1] if before else 0
        word = bisect.bisect_left(concessions, clause_start)
        flags.append(word < len(concessions) and concessions[word] < match.start())
    return flags


def _decide(region: str, subject_key: str, pick_first: bool = False) -> tuple[int | None, str | None]:
    """The verdict of ``region``: its last conclusion (first when ``pick_first``).

    Conclusions in a concessive clause never count; ones scoped to an aspect ("Image 1 is better in
    color") count only when the region has no plain conclusion.
    """
    found = [m for m in _CONCLUSIONS[subject_key].finditer(region) if _verdict(m) is not None]
    found = [m for m, conceded in zip(found, _conceded_flags(region, found)) if not conceded]
    plain = [m for m in found if m.group("tie") or not _SCOPE.match(region, m.end())]
    matches = plain or found
    if not matches:
        return None, "no conclusion such as 'Image 1 is better' found"
    index = 0 if pick_first else len(matches) - 1
    chosen, winner = matches[index], _verdict(matches[index])
    for neighbour in (index - 1, index + 1):
        if 0 <= neighbour < len(matches) and _verdict(matches[neighbour]) != winner:
            first, second = sorted((chosen, matches[neighbour]), key=lambda m: m.start())
            gap = region[first.end() : second.start()]
            if _ENUMERATION_GAP.fullmatch(gap) and _ENUMERATION_MARK.search(gap):
                return None, "ambiguous: the output lists several verdicts together"
    return winner, None


def _answer_content(text: str) -> str | None:
    """Content of the last <answer> block; an unclosed final <answer> counts (output cut after it)."""
    # Linear scans (a lazy <answer>(.*?)</answer> regex is quadratic on unclosed tags).
    opens = list(_ANSWER_OPEN.finditer(text))
    if not opens:
        return None
    last_close = None
    for last_close in _ANSWER_CLOSE.finditer(text):
        pass
    if last_close is None or opens[-1].start() > last_close.start():
        return text[opens[-1].end() :]
    before_close = [m for m in opens if m.end() <= last_close.start()]
    return text[before_close[-1].end() : last_close.start()] if before_close else text[opens[-1].end() :]


def _pair_rank(subject_key: str) -> Parser:
    def parse_pair_rank(text: str) -> RewardResult:
        answer = _answer_content(text)
        if answer is not None:
            winner, _ = _decide(answer, subject_key)
            if winner is not None:
                return _ok(text, winner=winner)
        judgments = list(_OVERALL_JUDGMENT.finditer(text))
        if judgments:
            winner, _ = _decide(text[judgments[-1].end() :], subject_key, pick_first=True)
            if winner is not None:
                return _ok(text, winner=winner)
        winner, error = _decide(text, subject_key)
        return _ok(text, winner=winner) if winner is not None else _fail(text, error)

    return parse_pair_rank


def _think(subject_key: str) -> Parser:
    """CoT output: the verdict comes from <answer> only, never from the <think> text."""

    def parse_think(text: str) -> RewardResult:
        answer = _answer_content(text)
        if answer is None:
            cut = "<think>" in text.lower() and "</think>" not in text.lower()
            reason = "CoT cut before </think> (raise max_new_tokens?)" if cut else "no <answer> block"
            return _fail(text, reason)
        winner, error = _decide(answer, subject_key)
        if winner is None:
            return _fail(text, f"<answer> {_snippet(answer)!r}: {error}")
        return _ok(text, winner=winner)

    return parse_think


# --------------------------------------------------------------------------- point scores
_FINAL_SCORE = re.compile(
    r"final\s*score[\s*_]*(?:\([^)\n]{0,20}\)[\s*_]*)?(?:[:\uff1a=]|is\b)[\s*_\[(]*(" + _NUMBER + r")",
    re.IGNORECASE,
)
_FINAL_SCORE_MENTION = re.compile(r"final\s*score", re.IGNORECASE)


def _scale_text(low: float, high: float) -> str:
    return f"{low:g}-{high:g}"


def _final_score(low: float, high: float) -> Parser:
    """``Final Score: X`` on the scale [low, high]; the last occurrence wins."""

    def parse_final_score(text: str) -> RewardResult:
        matches = _FINAL_SCORE.findall(text)
        if not matches:
            if _FINAL_SCORE_MENTION.search(text):
                return _fail(text, "'Final Score' is not followed by a number (output cut?)")
            return _fail(text, "no 'Final Score:' in the output")
        value = read_number(matches[-1], high)
        if not low <= value <= high:
            return _fail(text, f"Final Score {value:g} is outside the {_scale_text(low, high)} scale")
        return _ok(text, score=value)

    return parse_final_score


_DIMENSION_SCORE = re.compile(
    r"\b(alignment|coherence|style|physics)\s+score[\s*_]*(?:\(\s*1\s*-\s*5\s*\)[\s*_]*)?[:\uff1a][\s*_]*("
    + _NUMBER
    + r"|nan)",
    re.IGNORECASE,
)


# the dimensions each multi-score parser reports (ACS for images, APS for videos)
MULTI_SCORE_DIMENSIONS = {"acs": ("alignment", "coherence", "style"), "aps": ("alignment", "physics", "style")}


def _multi_score(dimensions: tuple[str, ...], low: float = 1.0, high: float = 5.0) -> Parser:
    """``Alignment Score (1-5): X`` lines (ACS / APS); ``score`` is their mean when all are valid."""

    def parse_multi_score(text: str) -> RewardResult:
        found: dict[str, str] = {}
        for name, raw in _DIMENSION_SCORE.findall(text):
            found[name.lower()] = raw  # last occurrence wins
        scores: dict[str, float] = {}
        problems: list[str] = []
        for dim in dimensions:
            raw = found.get(dim)
            if raw is None:
                problems.append(f"{dim} missing")
            elif raw.lower() == "nan":
                problems.append(f"{dim} is nan")
            else:
                try:
                    value = read_number(raw, high)
                except NumberError as error:
                    problems.append(f"{dim} {error}")
                    continue
                if low <= value <= high:
                    scores[dim] = value
                else:
                    problems.append(f"{dim} {value:g} outside {_scale_text(low, high)}")
        if problems:
            return _fail(text, "dimension scores: " + "; ".join(problems), scores=scores or None)
        return _ok(text, scores=scores, score=sum(scores.values()) / len(scores))

    return parse_multi_score


# --------------------------------------------------------------------------- 2.0 pair scores
_PAIR_SCORE_HEADER = re.compile(r"\b(alignment|coherence|style|physics)\s+score[\s*_]*[:\uff1a]", re.IGNORECASE)
_PAIR_SCORE_DIMENSIONS = ("alignment", "coherence", "style")


def _pair_score(subject: str) -> Parser:
    """UnifiedReward-2.0 relative scores: per dimension ``Image 1: x`` / ``Image 2: y``, each in [0, 1].

    Dimensions with ``nan`` or missing/out-of-range values are dropped. The result is ok when at
    least one dimension is valid: ``winner`` compares the sums over the valid dimensions and
    ``error`` names the dropped ones (a warning); with no valid dimension it is a parse_error.
    """
    value_pattern = re.compile(rf"\b{subject}\s*([12])[\s*_]*[:\uff1a][\s*_]*({_NUMBER}|nan)", re.IGNORECASE)

    def parse_pair_score(text: str) -> RewardResult:
        headers = list(_PAIR_SCORE_HEADER.finditer(text))
        blocks: dict[str, str] = {}
        for i, header in enumerate(headers):
            end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
            blocks[header.group(1).lower()] = text[header.end() : end]  # last block wins
        scores: dict[str, float] = {}
        dropped: list[str] = []
        for dim in _PAIR_SCORE_DIMENSIONS:
            values = {n: raw for n, raw in value_pattern.findall(blocks.get(dim, ""))}
            if dim not in blocks or set(values) != {"1", "2"}:
                dropped.append(f"{dim} missing")
            elif "nan" in (values["1"].lower(), values["2"].lower()):
                dropped.append(f"{dim} is nan")
            else:
                try:
                    pair = [read_number(values[n], 1.0) for n in ("1", "2")]
                except NumberError as error:
                    dropped.append(f"{dim} {error}")
                    continue
                if all(0.0 <= v <= 1.0 for v in pair):
                    scores[f"{dim}/1"], scores[f"{dim}/2"] = pair
                else:
                    dropped.append(f"{dim} outside 0-1")
        if not scores:
            return _fail(text, "no valid dimension: " + "; ".join(dropped))
        total_1 = sum(v for k, v in scores.items() if k.endswith("/1"))
        total_2 = sum(v for k, v in scores.items() if k.endswith("/2"))
        winner = 0 if math.isclose(total_1, total_2, abs_tol=1e-9) else (1 if total_1 > total_2 else 2)
        warning = ("partial result, dropped: " + "; ".join(dropped)) if dropped else None
        return _ok(text, winner=winner, scores=scores, error=warning)

    return parse_pair_score


# --------------------------------------------------------------------------- JSON outputs
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in ``text`` (```json fence optional; trailing commas tolerated)."""
    candidates = [block for block in _FENCE.findall(text) if "{" in block] + [text]
    for candidate in candidates:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start < 0 or end < start:
            continue
        body = candidate[start : end + 1]
        for attempt in (body, _TRAILING_COMMA.sub(r"\1", body)):
            try:
                value = json.loads(attempt)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                return value, None
    return None, "no valid JSON object in the output"


def _number(value: Any) -> float | None:
    """A finite number from a JSON value (numbers or numeric strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer with hundreds of digits
            return None
    elif isinstance(value, str) and re.fullmatch(r"\s*" + _NUMBER + r"\s*", value):
        try:
            number = read_number(value)
        except NumberError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


_FLEX_CHOICE = re.compile(r"\b(?:image|video)\s*([12])\b", re.IGNORECASE)
_STANDALONE_DIGIT = re.compile(r"(?<![\d.])([12])(?![\d.])")
_FLEX_TIE = re.compile(r"\b(?:tie|equal|equally|both|same)\b", re.IGNORECASE)


def _flex_winner(value: Any) -> int | None:
    """"Image 1" / "Video 2" / 1 / "tie" -> 1, 2, 0; anything else -> None."""
    if isinstance(value, int) and not isinstance(value, bool) and value in (1, 2):
        return value
    if not isinstance(value, str):
        return None
    if value.strip() in ("1", "2"):
        return int(value.strip())
    if _FLEX_CHOICE.search(value):
        choices = set(_STANDALONE_DIGIT.findall(value))  # "Image 1/2" names both
        return int(choices.pop()) if len(choices) == 1 else None
    if _FLEX_TIE.search(value):
        return 0
    return None


def _parse_flex(text: str) -> RewardResult:
    """UnifiedReward-Flex JSON: ``winner`` plus per-category winners and per-dimension scores.

    ``scores`` holds ``category/<name>`` -> 1, 2 or 0 (tie) and ``<category>/<dim>/1|2`` -> 0-10.
    """
    obj, error = _json_object(text)
    if obj is None:
        return _fail(text, error)
    winner = _flex_winner(obj.get("winner"))
    if winner is None:
        return _fail(text, f"unreadable winner {_snippet(str(obj.get('winner')))!r}")
    scores: dict[str, float] = {}
    categories = obj.get("categories")
    for category in categories if isinstance(categories, list) else []:
        if not isinstance(category, dict) or not isinstance(category.get("name"), str):
            continue
        name = category["name"]
        cat_winner = _flex_winner(category.get("cat_winner"))
        if cat_winner is not None:
            scores[f"category/{name}"] = float(cat_winner)
        dims = category.get("dims")
        for dim in dims if isinstance(dims, list) else []:
            if not isinstance(dim, dict) or not isinstance(dim.get("name"), str):
                continue
            for side in ("1", "2"):
                value = _number(dim.get(f"score_{side}"))
                if value is not None:
                    scores[f"{name}/{dim['name']}/{side}"] = value
    return _ok(text, winner=winner, scores=scores or None)


_SCORE_LIST = re.compile(
    r"[\"']?score[\"']?\s*[:=]\s*\[\s*(" + _LIST_NUMBER + r")\s*,\s*(" + _LIST_NUMBER + r")\s*[,\]]", re.IGNORECASE
)


def _edit_point(dimensions: tuple[str, str], low: float = 0.0, high: float = 25.0) -> Parser:
    """UnifiedReward-Edit pointwise ``{"reasoning": ..., "score": [a, b]}``; ``score`` = mean(a, b)."""

    def parse_edit_point(text: str) -> RewardResult:
        pair: list[float | None] | None = None
        obj, _ = _json_object(text)
        if obj is not None and isinstance(obj.get("score"), list) and len(obj["score"]) >= 2:
            pair = [_number(v) for v in obj["score"][:2]]
        if pair is None or None in pair:
            matches = _SCORE_LIST.findall(text)
            if not matches:
                return _fail(text, "no 'score': [a, b] list in the output")
            pair = [_to_float(v) for v in matches[-1]]
        bad = [f"{dim} {v:g}" for dim, v in zip(dimensions, pair) if not low <= v <= high]
        if bad:
            return _fail(text, f"scores outside {_scale_text(low, high)}: " + ", ".join(bad))
        scores = dict(zip(dimensions, pair))
        return _ok(text, scores=scores, score=sum(pair) / 2)

    return parse_edit_point


_EDIT_PAIR_VALUE = re.compile(
    r"\b(?:edited\s+)?image\s*([12])\b[\s*]*(?:'s\s+)?(?:(?:final\s+)?score[\s*]*)?(?:[:\uff1a=]|is\b)[\s*]*("
    + _NUMBER
    + r")",
    re.IGNORECASE,
)
_BRACKET_PAIR = re.compile(r"\[\s*(" + _LIST_NUMBER + r")\s*,\s*(" + _LIST_NUMBER + r")\s*\]")


def _parse_edit_pair_score(text: str) -> RewardResult:
    """UnifiedReward-Edit pair score: one (possibly negative or integer) score per edited image.

    Reads ``Edited Image 1: 3.5`` style labels (last per image), else a ``[a, b]`` list.
    """
    labelled = {n: raw for n, raw in _EDIT_PAIR_VALUE.findall(text)}
    if set(labelled) == {"1", "2"}:
        first, second = _to_float(labelled["1"]), _to_float(labelled["2"])
    else:
        pairs = _BRACKET_PAIR.findall(text)
        if not pairs:
            return _fail(text, "no score for both edited images (expected 'Image 1: x' and 'Image 2: y')")
        first, second = (_to_float(v) for v in pairs[-1])
    winner = 0 if first == second else (1 if first > second else 2)
    return _ok(text, winner=winner, scores={"1": first, "2": second})


# --------------------------------------------------------------------------- registry
def register_parser(name: str, parser: Parser, overwrite: bool = False) -> None:
    """Make ``parser`` available to `parse` and to templates under ``name`` (a :class:`NumberError` it
    raises becomes ``parse_error``)."""
    if name in PARSERS and not overwrite:
        raise ValueError(f"parser {name!r} already exists; pass overwrite=True to replace it")
    PARSERS[name] = _numbers_read(parser)


for _key in ("image", "video", "answer", "edited_image"):
    register_parser(f"pair_rank_{_key}", _pair_rank(_key))
register_parser("pair_rank", _pair_rank("any"))
for _key in ("image", "video", "answer"):
    register_parser(f"think_{_key}", _think(_key))
register_parser("think", _think("any"))
register_parser("final_score_1_5", _final_score(1.0, 5.0))
register_parser("final_score_1_10", _final_score(1.0, 10.0))
register_parser("final_score_0_100", _final_score(0.0, 100.0))
for _name, _dimensions in MULTI_SCORE_DIMENSIONS.items():
    register_parser(_name, _multi_score(_dimensions))
register_parser("pair_score_image", _pair_score("image"))
register_parser("pair_score_video", _pair_score("video"))
register_parser("flex_image", _parse_flex)
register_parser("flex_video", _parse_flex)
register_parser("edit_pair_score", _parse_edit_pair_score)
register_parser("edit_point_instruction_following", _edit_point(("success", "overediting")))
register_parser("edit_point_quality", _edit_point(("naturalness", "artifacts")))


def parse(parser_name: str, text: str | None) -> RewardResult:
    """Parse one model output with the parser ``parser_name`` (see `PARSERS`).

    Unknown parser names raise ``KeyError``; any text (even ``None``) gives a `RewardResult`.
    """
    if parser_name not in PARSERS:
        raise KeyError(f"unknown parser {parser_name!r}; known: {', '.join(sorted(PARSERS))}")
    if not isinstance(text, str) or not text.strip():
        return _fail(text if isinstance(text, str) else None, "empty output")
    try:
        return PARSERS[parser_name](text)
    except Exception as exc:  # a parser bug must not sink the batch
        logger.exception("parser %s failed", parser_name)
        return _fail(text, f"parser {parser_name} failed: {exc!r}")


def parse_for(template: Any, text: str | None) -> RewardResult:
    """Parse ``text`` with the parser of ``template`` (a `Template` or a registered key)."""
    from reward_core.prompts import get_template

    return parse(get_template(template).parser, text)

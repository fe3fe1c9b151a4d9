"""Outputs in the styles the released UnifiedReward checkpoints produce, each with the verdict a reader reads.

Styles follow the upstream scripts and prompts (upstream-unifiedreward.md, section (a)): 1.0 Qwen / LLaVA pair
rank and point score, v1.5 / 2.0 ACS and APS, 2.0 pair score (including the ``nan`` of issue #82), Think CoT
(Qwen2.5 and Qwen3-VL layouts), Edit pair rank / pair score / pointwise JSON, Flex JSON. Written here by
hand from those formats (no checkpoint runs on these machines); each expectation is what a person reading
the text would take as the judge's verdict, or ``None`` where a reader could not name one.

``CASES``: (name, parser, text, expected) with expected ``{"winner": n}``, ``{"score": x}``,
``{"scores": {...}}`` (subset check) or ``None`` (parse_error).
"""

from __future__ import annotations

QWEN3_THINK = """<think>
1. Semantic consistency:
    Image 1 (9/10) - The red cube sits on the blue sphere as asked.;
    Image 2 (6/10) - The cube is beside the sphere, not on it.;
2. Aesthetics:
    Image 1 (7/10) - Flat lighting.;
    Image 2 (8/10) - Pleasant soft shadows.;
3. Authenticity:
    Image 1 (8/10) - Plausible materials.;
    Image 2 (7/10) - Slightly plastic look.;
Total score:
Image 1: 9+7+8=24
Image 2: 6+8+7=21
</think>
<answer>Image 1 is better</answer>"""

QWEN25_THINK_VIDEO = (
    "<think>\n1. Semantic consistency: Video 1 (6/10) - the dog runs but not on a beach; Video 2 (9/10) - a dog "
    "runs along the shore.\n2. Temporal coherence: Video 1 (7/10); Video 2 (8/10)\nTotal score:\nVideo 1: 6+7=13\n"
    "Video 2: 9+8=17\n</think>\n<answer>Video 2 is better</answer>"
)

PAIR_SCORE = """Alignment Score:
 Image 1: 0.4357
 Image 2: 0.5643

Coherence Score:
 Image 1: 0.6120
 Image 2: 0.3880

Style Score:
 Image 1: 0.3011
 Image 2: 0.6989"""

PAIR_SCORE_NAN = """Alignment Score:
 Image 1: 0.7000
 Image 2: 0.3000

Coherence Score:
 Image 1: 0.5500
 Image 2: 0.4500

Style Score:
 Image 1: nan
 Image 2: nan"""

FLEX = """```json
{
  "prompt": "a cat wearing a wizard hat",
  "categories": [
    {"name": "Content", "dims": [{"name": "subject", "reason_1": "clear cat", "reason_2": "blurry",
      "score_1": 8, "score_2": 2}], "cat_reason": "Image 1 shows the cat", "cat_winner": "Image 1"},
    {"name": "Style", "dims": [{"name": "lighting", "reason_1": "flat", "reason_2": "warm",
      "score_1": 4, "score_2": 6}], "cat_reason": "Image 2 is warmer", "cat_winner": "Image 2"}
  ],
  "reason": "Content matters most for this prompt.",
  "winner": "Image 1"
}
```"""

CASES: list[tuple[str, str, str, dict | None]] = [
    # ---- 1.0 Qwen image generation pair rank: free text ending in the verdict
    ("qwen-img-pair-1", "pair_rank_image", "Image 1 shows the red cube clearly while Image 2 misses it. Image 1 is better.", {"winner": 1}),
    ("qwen-img-pair-2", "pair_rank_image", "Both show a cube, but the colors in Image 2 match the prompt. Image 2 is better.", {"winner": 2}),
    ("qwen-img-pair-tie", "pair_rank_image", "The two images are nearly identical in content and quality. Both images are equally good.", {"winner": 0}),
    ("qwen-img-pair-concede", "pair_rank_image", "Image 2 is better. Although Image 1 is better in sharpness, Image 2 follows the prompt.", {"winner": 2}),
    ("qwen-img-pair-concede-2", "pair_rank_image", "Although Image 1 is better in color accuracy, the composition decides it: Image 2 is better.", {"winner": 2}),
    ("qwen-img-pair-scoped", "pair_rank_image", "Image 1 is better in terms of lighting. Overall, Image 2 is better.", {"winner": 2}),
    ("qwen-img-pair-scoped-only", "pair_rank_image", "Image 2 is better in terms of overall alignment with the caption.", {"winner": 2}),
    ("qwen-img-pair-bold", "pair_rank_image", "**Image 1** is better.", {"winner": 1}),
    ("qwen-img-pair-echo", "pair_rank_image", 'Please state "Image 1 is better" or "Image 2 is better".', None),
    ("qwen-img-pair-none", "pair_rank_image", "Both images have strengths and weaknesses.", None),
    # ---- LLaVA image generation pair rank
    ("llava-img-pair-1", "pair_rank_image", "Image 1 is better than Image 2.", {"winner": 1}),
    ("llava-img-pair-2", "pair_rank_image", "Image 2 is better than Image 1.", {"winner": 2}),
    ("llava-img-pair-self", "pair_rank_image", "Image 1 is better than Image 1.", None),
    # ---- video generation pair rank
    ("qwen-vid-pair-1", "pair_rank_video", "Video 1 is better, with smoother motion and correct subject.", {"winner": 1}),
    ("qwen-vid-pair-2", "pair_rank_video", "Video 1 flickers. Video 2 is better.", {"winner": 2}),
    ("qwen-vid-pair-tie", "pair_rank_video", "Both videos are equally good.", {"winner": 0}),
    ("llava-vid-pair", "pair_rank_video", "Video 2 is better than Video 1.", {"winner": 2}),
    # ---- understanding pair rank (answers / responses, Overall Judgment)
    ("qwen-und-pair-1", "pair_rank_answer", "Answer 1 names the correct color; Answer 2 does not. Answer 1 is better.", {"winner": 1}),
    ("qwen-und-pair-2", "pair_rank_answer", "Answer 2 is better than Answer 1 because it counts the apples correctly.", {"winner": 2}),
    ("sift-und-overall", "pair_rank_answer", "1. Accuracy: Answer 2 is better on counting.\n2. Clarity: Answer 1 is better.\nOverall Judgment: Answer 2 is better than Answer 1.", {"winner": 2}),
    ("vid-und-overall", "pair_rank_answer", "Accuracy: both mention the dog.\nCompleteness: Answer 1 misses the ball.\nOverall Judgment: Answer 2 is better.", {"winner": 2}),
    ("llava-critic-first", "pair_rank_answer", "The first response is better, because it describes the scene accurately.", {"winner": 1}),
    ("llava-critic-second", "pair_rank_answer", "After review, the second response is better.", {"winner": 2}),
    ("llava-critic-response", "pair_rank_answer", "Response 2 is better than Response 1.", {"winner": 2}),
    ("und-pair-echo", "pair_rank_answer", "Clearly state your decision, such as 'Answer 1 is better' or 'Answer 2 is better.'", None),
    # ---- Think (CoT)
    ("think-qwen3-img", "think_image", QWEN3_THINK, {"winner": 1}),
    ("think-qwen25-vid", "think_video", QWEN25_THINK_VIDEO, {"winner": 2}),
    ("think-und", "think_answer", "<think>Answer 1 is better in detail, but Answer 2 is correct.</think>\n<answer>Answer 2 is better</answer>", {"winner": 2}),
    ("think-cut", "think_image", "<think>\n1. Semantic consistency: Image 1 (8/10) - ...; Image 2 (9/10) - ...\n2. Aesth", None),
    ("think-no-answer", "think_image", "<think>Image 1 is better.</think>", None),
    ("think-answer-unclosed", "think_image", "<think>reasoning</think>\n<answer>Image 2 is better", {"winner": 2}),
    # ---- Edit pair rank
    ("edit-pair-rank-1", "pair_rank_edited_image", "Edited image 1 is better.", {"winner": 1}),
    ("edit-pair-rank-2", "pair_rank_edited_image", "<answer>Edited image 2 is better</answer>", {"winner": 2}),
    # ---- point score, image generation 1-5 (element lines, then Final Score)
    ("qwen-img-point", "final_score_1_5", "red cube (object): 1\nblue sphere (object): 1\non top of (relation): 0\nFinal Score: 3", {"score": 3.0}),
    ("sglang-img-point-frac", "final_score_1_5", "cat (object): 1\nhat (attribute): 0.5\nFinal Score: 2.33", {"score": 2.33}),
    ("img-point-bold", "final_score_1_5", "**Final Score:** 4", {"score": 4.0}),
    ("img-point-of-five", "final_score_1_5", "Final Score: 4/5", {"score": 4.0}),
    ("img-point-of-ten", "final_score_1_5", "Final Score: 3/10", None),
    ("img-point-comma", "final_score_1_5", "Final Score: 4,5", None),
    ("img-point-range", "final_score_1_5", "Final Score: 3-4", None),
    ("img-point-cut", "final_score_1_5", "red cube (object): 1\nFinal Score:", None),
    ("img-point-last", "final_score_1_5", "Example: Final Score: 5\n...\nFinal Score: 2", {"score": 2.0}),
    ("img-point-out", "final_score_1_5", "Final Score: 7", None),
    # ---- video generation point score 1-10
    ("vid-point", "final_score_1_10", "visual quality: 3\ntemporal consistency: 4\ndynamic degree: 2\ntext-to-video alignment: 3\nfactual consistency: 4\nFinal Score: 8", {"score": 8.0}),
    ("vid-point-10", "final_score_1_10", "visual quality: 4\nFinal Score: 10", {"score": 10.0}),
    # ---- understanding point score 0-100 and 1-5
    ("und-point-100", "final_score_0_100", "The answer identifies both objects but misstates the count. Final Score: 72", {"score": 72.0}),
    ("und-point-100-frac5", "final_score_0_100", "Final Score: 4.5/5", None),
    ("und-point-100-of-100", "final_score_0_100", "Final Score: 85/100", {"score": 85.0}),
    ("vid-und-point", "final_score_1_5", "The response is accurate and complete. Final Score: 5", {"score": 5.0}),
    ("und-point-sci", "final_score_0_100", "Final Score: 1e-3", {"score": 0.001}),
    # ---- ACS v1.5 (word-wise) and v2, APS v2
    ("acs-v15", "acs", 'Word-wise Scores: [["a", 5], ["red", 4], ["[No_mistakes]", 4]]\n\nAlignment Score (1-5): 4\nCoherence Score (1-5): 5\nStyle Score (1-5): 3',
     {"scores": {"alignment": 4.0, "coherence": 5.0, "style": 3.0}}),
    ("acs-v2", "acs", "Alignment Score (1-5): 2.6947\nCoherence Score (1-5): 3.1021\nStyle Score (1-5): 2.9983",
     {"scores": {"alignment": 2.6947, "coherence": 3.1021, "style": 2.9983}}),
    ("acs-missing", "acs", "Alignment Score (1-5): 4\nStyle Score (1-5): 3", None),
    ("aps-v2", "aps", "Alignment Score (1-5): 2.4036\nPhysics Score (1-5): 3.5\nStyle Score (1-5): 4.0120",
     {"scores": {"alignment": 2.4036, "physics": 3.5, "style": 4.012}}),
    ("aps-nan", "aps", "Alignment Score (1-5): 3\nPhysics Score (1-5): nan\nStyle Score (1-5): 4", None),
    # ---- 2.0 pair score
    ("pair-score", "pair_score_image", PAIR_SCORE, {"winner": 2, "scores": {"alignment/1": 0.4357, "style/2": 0.6989}}),
    ("pair-score-nan", "pair_score_image", PAIR_SCORE_NAN, {"winner": 1, "scores": {"alignment/1": 0.7}}),
    ("pair-score-video", "pair_score_video", PAIR_SCORE.replace("Image", "Video"), {"winner": 2}),
    ("pair-score-sci", "pair_score_image", PAIR_SCORE.replace("0.4357", "1e-3").replace("0.5643", "0.999").replace("0.6120", "0.5").replace("0.3880", "0.5"),
     {"winner": 2, "scores": {"alignment/1": 0.001}}),
    # ---- Edit pair score and pointwise JSON
    ("edit-pair-score", "edit_pair_score", "Edited Image 1: 3.5\nEdited Image 2: -1.25", {"winner": 1, "scores": {"1": 3.5, "2": -1.25}}),
    ("edit-pair-score-int", "edit_pair_score", "Image 1 score: 2\nImage 2 score: 4", {"winner": 2}),
    ("edit-pair-score-list", "edit_pair_score", "Scores: [0.5, 0.75]", {"winner": 2}),
    ("edit-point-if", "edit_point_instruction_following", '{"reasoning" : "The hat was added and nothing else changed.", "score" : [22, 24]}',
     {"score": 23.0, "scores": {"success": 22.0, "overediting": 24.0}}),
    ("edit-point-quality-fence", "edit_point_quality", '```json\n{"reasoning": "Natural lighting, small seam.", "score": [20, 17],}\n```',
     {"score": 18.5}),
    ("edit-point-out", "edit_point_quality", '{"reasoning": "x", "score": [30, 10]}', None),
    # ---- Flex JSON
    ("flex-image", "flex_image", FLEX, {"winner": 1, "scores": {"category/Content": 1.0, "Content/subject/1": 8.0}}),
    ("flex-video-tie", "flex_video", '{"categories": [], "reason": "equal", "winner": "tie"}', {"winner": 0}),
    ("flex-both", "flex_image", '{"winner": "Image 1/2"}', None),
]

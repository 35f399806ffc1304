"""The prompt sent to the LLM and the structured answer asked of it.

One chat call per intent: the user message is the configurable template with ``{intent}`` and
``{emotions}`` filled in; ``ANALYSIS_SCHEMA`` is passed as the structured-output ``format``, and its
``analysis`` field carries the prose, so one request gives both the text and the machine-readable
verdict (one request in flight, one model latency). Pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from game_sdk.protocol import CLASSES

DEFAULT_PROMPT_TEMPLATE = (
    "Player intent: '{intent}'. Here is their emotion data during the desired event:\n"
    "{emotions}\n\nAnalyze how their emotions relate to intent."
)

ALIGNMENTS = ("aligned", "mixed", "misaligned")

# Sent as the system message: structured output works best when the model is also told the shape.
SYSTEM_PROMPT = (
    "You analyse a video-game player's facial emotions, measured by a classifier while "
    "they carried out something they said they intended to do. Reply with one JSON object "
    "with these fields: "
    '"analysis" (a short paragraph relating the emotions to the intent), "verdict" (one short '
    'sentence), "alignment" (one of "aligned", "mixed", "misaligned": do the emotions fit the '
    'intent?), "emotions" (the emotions that matter, from: ' + ", ".join(CLASSES) + "), "
    '"suggestion" (one sentence for the game designer or the player).'
)

MAX_VERDICT = 300
MAX_SUGGESTION = 1000
MAX_ANALYSIS = 8000


def analysis_schema(classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """The JSON schema of the answer (Ollama's ``format=``, llama.cpp's ``response_format``)."""
    return {
        "type": "object",
        "properties": {
            "analysis": {"type": "string"},
            "verdict": {"type": "string"},
            "alignment": {"type": "string", "enum": list(ALIGNMENTS)},
            "emotions": {
                "type": "array",
                "items": {"type": "string", "enum": list(classes)},
                "maxItems": 3,  # bounds the list in the grammar (small models loop otherwise)
            },
            "suggestion": {"type": "string"},
        },
        "required": ["analysis", "verdict", "alignment", "emotions", "suggestion"],
    }


ANALYSIS_SCHEMA: dict[str, Any] = analysis_schema()


def render_prompt(template: str, intent: str, emotions: str) -> str:
    """Fill ``{intent}`` and ``{emotions}`` in ``template``.

    Plain replacement, not ``str.format``: an intent such as ``"{emotions}"`` or ``"{0}"`` stays
    literal text. The template is filled in one pass so text inserted for one placeholder is never
    searched for the other.
    """
    out: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith("{intent}", i):
            out.append(intent)
            i += len("{intent}")
        elif template.startswith("{emotions}", i):
            out.append(emotions)
            i += len("{emotions}")
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def check_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` names both placeholders (for config validation)."""
    missing = [p for p in ("{intent}", "{emotions}") if p not in template]
    if missing:
        raise ValueError(f"prompt template lacks {', '.join(missing)}")


def schema_problems(obj: Any, classes: Sequence[str] = CLASSES) -> list[str]:
    """What is wrong with ``obj`` as an answer to ``analysis_schema`` (empty when it is valid)."""
    if not isinstance(obj, Mapping):
        return [f"answer is a {type(obj).__name__}, not an object"]
    problems = []
    for key in ("analysis", "verdict", "suggestion", "alignment"):
        if not isinstance(obj.get(key), str):
            problems.append(f"{key} is missing or not a string")
    if isinstance(obj.get("alignment"), str) and obj["alignment"] not in ALIGNMENTS:
        problems.append(f"alignment {obj['alignment']!r} is not one of {', '.join(ALIGNMENTS)}")
    emotions = obj.get("emotions")
    if not isinstance(emotions, list):
        problems.append("emotions is missing or not a list")
    else:
        bad = [e for e in emotions if e not in classes]
        if bad:
            problems.append(f"emotions has unknown labels {bad[:3]!r}")
    return problems


def parse_answer(
    content: str, classes: Sequence[str] = CLASSES
) -> tuple[str, dict[str, Any] | None, str | None]:
    """Split the model's reply into ``(prose, structured, note)``.

    A reply that is valid JSON for the schema gives its ``analysis`` as prose and the other fields
    (deduplicated, lengths capped) as ``structured``. Anything else keeps the raw reply as prose,
    ``structured`` None and a note saying why: the game still gets the words.
    """
    try:
        # strict=False: small models put raw newlines inside JSON strings (llama.cpp's grammar
        # lets them through); the meaning is unambiguous, so accept them.
        obj = json.loads(content, strict=False)
    except (json.JSONDecodeError, ValueError):
        return content.strip(), None, "the model's reply was not JSON"
    problems = schema_problems(obj, classes)
    if problems:
        prose = obj.get("analysis") if isinstance(obj, Mapping) else None
        text = prose.strip() if isinstance(prose, str) and prose.strip() else content.strip()
        return text, None, "the model's JSON did not match the schema: " + "; ".join(problems)
    emotions = list(dict.fromkeys(obj["emotions"]))
    structured = {
        "verdict": obj["verdict"].strip()[:MAX_VERDICT],
        "alignment": obj["alignment"],
        "emotions": emotions,
        "suggestion": obj["suggestion"].strip()[:MAX_SUGGESTION],
    }
    return obj["analysis"].strip()[:MAX_ANALYSIS], structured, None

"""The prompts a subject is rendered with: the DreamBooth 25-prompt set, or templates from a file.

Every prompt comes in two forms: with the identifier token (``a sks dog in the jungle``) for the
personalized model, and with the class noun only (``a dog in the jungle``), which the evaluator uses
for CLIP-T without the meaningless token.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path

from ..data.prompts import LIVE_PROMPTS, OBJECT_PROMPTS, fill, prompt_templates
from ..errors import UserError

PROMPT_SETS = ("auto", "object", "live")
PLACEHOLDERS = ("token", "class_noun")


class PromptFileError(UserError):
    """A prompt file that cannot be used (missing, empty, or with unknown placeholders)."""


@dataclass(frozen=True)
class SubjectPrompt:
    """One prompt of a subject's set; ``index`` names its folder (``00`` … ``24``)."""

    index: int
    prompt: str
    class_prompt: str


def templates_for(class_noun: str, prompt_set: str = "auto") -> list[str]:
    """DreamBooth templates: ``auto`` picks live-subject prompts for pets (dog, cat), object prompts otherwise."""
    if prompt_set == "auto":
        return prompt_templates(class_noun)
    if prompt_set == "object":
        return OBJECT_PROMPTS
    if prompt_set == "live":
        return LIVE_PROMPTS
    raise ValueError(f"prompt set must be one of {', '.join(PROMPT_SETS)}, got {prompt_set!r}")


def read_prompt_file(path: str | os.PathLike[str]) -> list[str]:
    """Templates from a text file: one per line, ``{token}`` and ``{class_noun}`` optional, ``#`` comments.

    Raises ``PromptFileError`` naming the file (and line) when it is missing, empty, or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"prompt file {path} is not readable UTF-8 text ({exc})") from exc
    templates = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(line) if name is not None]
        except ValueError as exc:
            raise PromptFileError(
                f"{path}:{number}: {exc} in {line!r} (write literal braces as '{{{{' and '}}}}')"
            ) from exc
        unknown = sorted(set(fields) - set(PLACEHOLDERS))
        if unknown:
            raise PromptFileError(
                f"{path}:{number}: unknown placeholder {{{unknown[0]}}} in {line!r}; "
                "only {token} and {class_noun} are filled in"
            )
        templates.append(line)
    if not templates:
        raise PromptFileError(f"prompt file {path} holds no prompts (one per line, '#' starts a comment)")
    return templates


def verbatim_templates(templates: list[str]) -> list[str]:
    """The templates with neither placeholder: rendered as written, so without the subject's identifier."""
    return [t for t in templates if not any(f"{{{name}}}" in t for name in PLACEHOLDERS)]


def subject_prompts(templates: list[str], token: str | None, class_noun: str) -> list[SubjectPrompt]:
    """Fill the templates for one subject; ``token`` None or ``""`` gives class-only prompts in both forms."""
    return [
        SubjectPrompt(index=i, prompt=fill(t, token, class_noun), class_prompt=fill(t, None, class_noun))
        for i, t in enumerate(templates)
    ]

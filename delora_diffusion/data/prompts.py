"""The DreamBooth evaluation prompts and the subject → class-noun table (Ruiz et al., CVPR 2023).

The two 25-prompt lists are part of the published protocol, written here as templates with
``{token}`` (the identifier, e.g. ``sks``) and ``{class_noun}`` (e.g. ``dog``). ``read_dreambooth_table``
parses the dataset's own ``prompts_and_classes.txt`` so a test can check both agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SHARED = [
    "a {token} {class_noun} in the jungle",
    "a {token} {class_noun} in the snow",
    "a {token} {class_noun} on the beach",
    "a {token} {class_noun} on a cobblestone street",
    "a {token} {class_noun} on top of pink fabric",
    "a {token} {class_noun} on top of a wooden floor",
    "a {token} {class_noun} with a city in the background",
    "a {token} {class_noun} with a mountain in the background",
    "a {token} {class_noun} with a blue house in the background",
    "a {token} {class_noun} on top of a purple rug in a forest",
]
_ATTRIBUTES = [
    "a red {token} {class_noun}",
    "a purple {token} {class_noun}",
    "a shiny {token} {class_noun}",
    "a wet {token} {class_noun}",
    "a cube shaped {token} {class_noun}",
]
OBJECT_PROMPTS: list[str] = (
    _SHARED
    + [
        "a {token} {class_noun} with a wheat field in the background",
        "a {token} {class_noun} with a tree and autumn leaves in the background",
        "a {token} {class_noun} with the Eiffel Tower in the background",
        "a {token} {class_noun} floating on top of water",
        "a {token} {class_noun} floating in an ocean of milk",
        "a {token} {class_noun} on top of green grass with sunflowers around it",
        "a {token} {class_noun} on top of a mirror",
        "a {token} {class_noun} on top of the sidewalk in a crowded street",
        "a {token} {class_noun} on top of a dirt road",
        "a {token} {class_noun} on top of a white rug",
    ]
    + _ATTRIBUTES
)
LIVE_PROMPTS: list[str] = (
    _SHARED
    + [
        "a {token} {class_noun} wearing a red hat",
        "a {token} {class_noun} wearing a santa hat",
        "a {token} {class_noun} wearing a rainbow scarf",
        "a {token} {class_noun} wearing a black top hat and a monocle",
        "a {token} {class_noun} in a chef outfit",
        "a {token} {class_noun} in a firefighter outfit",
        "a {token} {class_noun} in a police outfit",
        "a {token} {class_noun} wearing pink glasses",
        "a {token} {class_noun} wearing a yellow shirt",
        "a {token} {class_noun} in a purple wizard outfit",
    ]
    + _ATTRIBUTES
)

# The dataset's live subjects are its pets; every other class gets the object prompts.
LIVE_CLASS_NOUNS = frozenset({"dog", "cat"})
DEFAULT_TOKEN = "sks"


def is_live(class_noun: str) -> bool:
    return class_noun.strip().lower() in LIVE_CLASS_NOUNS


def prompt_templates(class_noun: str) -> list[str]:
    """The 25 live-subject templates for pets, the 25 object templates otherwise."""
    return LIVE_PROMPTS if is_live(class_noun) else OBJECT_PROMPTS


def fill(template: str, token: str | None, class_noun: str) -> str:
    """A prompt from a template; ``token=None`` or ``""`` gives the class-only prompt (``a dog in the jungle``)."""
    text = template.format(token=token or "", class_noun=class_noun)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class DreamBoothTable:
    """Contents of ``prompts_and_classes.txt``: subject → class noun and the two template lists."""

    classes: dict[str, str]
    object_prompts: list[str]
    live_prompts: list[str]


_PROMPT_LINE = re.compile(r"^'(.*)'\.format\(")


def read_dreambooth_table(path: str | Path) -> DreamBoothTable:
    """Parse the DreamBooth dataset's ``prompts_and_classes.txt`` (raises ``ValueError`` naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class table {path} does not exist")
    classes: dict[str, str] = {}
    lists: list[list[str]] = []
    section = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line in ("Classes", "Prompts"):
            section = line
        elif line == "subject_name,class" or not line:
            continue
        elif section == "Classes" and "," in line:
            subject, noun = line.split(",", 1)
            classes[subject.strip()] = noun.strip()
        elif line.startswith("prompt_list"):
            lists.append([])
        elif lists and (m := _PROMPT_LINE.match(line)):
            lists[-1].append(m.group(1).replace("{0}", "{token}").replace("{1}", "{class_noun}"))
    if not classes or len(lists) != 2:
        raise ValueError(f"{path}: expected a 'Classes' table and two prompt lists (objects, live subjects)")
    return DreamBoothTable(classes=classes, object_prompts=lists[0], live_prompts=lists[1])


def read_class_nouns(path: str | Path) -> dict[str, str]:
    """Subject → class noun from ``prompts_and_classes.txt`` or a plain ``subject,class`` CSV file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    if text is None:
        raise FileNotFoundError(f"class noun file {path} does not exist")
    if "prompt_list" in text:
        return read_dreambooth_table(path).classes
    classes = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or line == "subject_name,class":
            continue
        if "," not in line:
            raise ValueError(f"{path}:{number}: expected 'subject,class noun', got {line!r}")
        subject, noun = line.split(",", 1)
        classes[subject.strip()] = noun.strip()
    return classes

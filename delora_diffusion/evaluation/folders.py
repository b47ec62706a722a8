"""The two folder layouts evaluation reads, and the CLIP-T prompt of each generated image.

Real images: the DreamBooth dataset layout, ``REAL/<subject>/*.jpg`` with ``REAL/prompts_and_classes.txt``.
Generated images: the inference contract, ``GEN/<subject>/<prompt_index:02d>/<seed>.png`` with one JSON
object per image in ``GEN/<subject>/metadata.jsonl`` (``file`` relative to ``GEN/<subject>/``). Without a
metadata file the images are found by that path pattern and their prompts rebuilt from the DreamBooth
templates and the subject's class noun.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..data.prompts import DEFAULT_TOKEN, fill, prompt_templates, read_class_nouns
from ..fileio import json_lines
from ..images import IMAGE_SUFFIXES
from ..layout import METADATA_FILE
from .errors import EvaluationInputError
from .images import list_images

CLASS_TABLE_FILE = "prompts_and_classes.txt"
CLIP_T_PROMPTS = ("without_token", "with_token")
# generation settings carried into the results, so a results file says what produced the images
GENERATION_KEYS = ("adapter", "scale", "loras", "base_model", "num_inference_steps", "guidance_scale", "scheduler")


@dataclass(frozen=True)
class GeneratedImage:
    """One generated image and what its metadata says about it (None: not recorded)."""

    subject: str
    prompt_index: int
    path: Path
    file: str  # relative to GEN/<subject>/
    prompt: str | None = None
    class_prompt: str | None = None
    token: str | None = None
    class_noun: str | None = None
    seed: int | None = None
    generation: dict = field(default_factory=dict, compare=False)
    record: dict = field(default_factory=dict, compare=False)  # the whole metadata line (task-specific fields)


def _is_subject_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith((".", "_"))


def generated_subjects(gen_dir: Path) -> list[str]:
    """Subject folders of a generated-images folder (those holding metadata or prompt subfolders), sorted."""
    if not gen_dir.is_dir():
        raise EvaluationInputError(f"--generated_dir {gen_dir}: not a folder")
    names = [
        p.name
        for p in sorted(gen_dir.iterdir())
        if _is_subject_dir(p) and ((p / METADATA_FILE).is_file() or any(_is_subject_dir(c) for c in p.iterdir()))
    ]
    if not names:
        raise EvaluationInputError(
            f"--generated_dir {gen_dir}: no subject folders (expected {gen_dir}/<subject>/<prompt_index>/<seed>.png "
            f"and {gen_dir}/<subject>/{METADATA_FILE})"
        )
    return names


def real_images(real_dir: Path, subject: str) -> list[Path]:
    """The real photos of ``subject``; a missing or empty folder is an error naming it."""
    folder = real_dir / subject
    if not folder.is_dir():
        raise EvaluationInputError(f"generated subject {subject!r} has no folder in --real_dir ({folder} is missing)")
    files = list_images(folder)
    if not files:
        raise EvaluationInputError(f"subject {subject!r} has no real images in {folder} (expected *.jpg or *.png)")
    return files


def load_class_nouns(real_dir: Path, class_nouns_file: Path | None) -> dict[str, str]:
    """Subject -> class noun from ``--class_nouns`` if given, else ``REAL/prompts_and_classes.txt`` if present."""
    path = class_nouns_file or real_dir / CLASS_TABLE_FILE
    if class_nouns_file is None and not path.is_file():
        return {}
    try:
        return read_class_nouns(path)
    except (OSError, ValueError) as exc:
        raise EvaluationInputError(f"--class_nouns {path}: {exc}") from None


def _optional_int(value, where: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise EvaluationInputError(f"{where}: {key!r} must be an integer, got {value!r}")
    return value


def _optional_str(value, where: str, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EvaluationInputError(f"{where}: {key!r} must be a string, got {value!r}")
    return value


def _read_metadata(subject_dir: Path) -> list[GeneratedImage]:
    path = subject_dir / METADATA_FILE
    by_file: dict[str, GeneratedImage] = {}
    for where, record in json_lines(path, EvaluationInputError, "a JSON object"):
        if not isinstance(record, dict) or not isinstance(record.get("file"), str) or not record["file"]:
            raise EvaluationInputError(
                f"{where}: expected a JSON object with a 'file' (path relative to {subject_dir})"
            )
        if record.get("subject", subject_dir.name) != subject_dir.name:
            raise EvaluationInputError(
                f"{where}: subject {record['subject']!r} does not match its folder {subject_dir.name!r}"
            )
        file = record["file"]
        prompt_index = _optional_int(record.get("prompt_index"), where, "prompt_index")
        if prompt_index is None:
            prompt_index = _prompt_index_from_folder(Path(file).parent.name, where)
        # a resumed generation run appends again: the last line about a file wins
        by_file[file] = GeneratedImage(
            subject=subject_dir.name,
            prompt_index=prompt_index,
            path=subject_dir / file,
            file=file,
            prompt=_optional_str(record.get("prompt"), where, "prompt"),
            class_prompt=_optional_str(record.get("class_prompt"), where, "class_prompt"),
            token=_optional_str(record.get("token"), where, "token"),
            class_noun=_optional_str(record.get("class_noun"), where, "class_noun"),
            seed=_optional_int(record.get("seed"), where, "seed"),
            generation={key: record[key] for key in GENERATION_KEYS if key in record},
            record=record,
        )
    images = list(by_file.values())
    for image in images:
        if not image.path.is_file():
            raise EvaluationInputError(f"{path} lists {image.file}, but {image.path} does not exist")
    return images


def _prompt_index_from_folder(name: str, where: str) -> int:
    if not re.fullmatch(r"\d+", name):
        raise EvaluationInputError(f"{where}: no prompt_index, and the folder name {name!r} is not a prompt index")
    return int(name)


def _scan_folders(subject_dir: Path) -> list[GeneratedImage]:
    images = []
    for prompt_dir in sorted(p for p in subject_dir.iterdir() if _is_subject_dir(p)):
        index = _prompt_index_from_folder(prompt_dir.name, str(prompt_dir))
        for path in list_images(prompt_dir):
            seed = int(path.stem) if re.fullmatch(r"\d+", path.stem) else None
            images.append(GeneratedImage(subject_dir.name, index, path, f"{prompt_dir.name}/{path.name}", seed=seed))
    return images


def read_generated(gen_dir: Path, subject: str) -> list[GeneratedImage]:
    """The generated images of ``subject``, ordered by (prompt index, file); an empty subject is an error."""
    subject_dir = gen_dir / subject
    if not subject_dir.is_dir():
        raise EvaluationInputError(f"subject {subject!r} has no folder in --generated_dir ({subject_dir} is missing)")
    images = _read_metadata(subject_dir) if (subject_dir / METADATA_FILE).is_file() else _scan_folders(subject_dir)
    if not images:
        raise EvaluationInputError(
            f"{subject_dir}: no generated images (expected <prompt_index>/<seed>.png, listed in {METADATA_FILE})"
        )
    for image in images:
        if image.path.suffix.lower() not in IMAGE_SUFFIXES:
            raise EvaluationInputError(f"{image.path}: not an image file (expected one of {sorted(IMAGE_SUFFIXES)})")
    return sorted(images, key=lambda image: (image.prompt_index, image.file))


def _without_token(prompt: str, token: str) -> str:
    return " ".join(word for word in prompt.split() if word != token)


def clip_t_prompt(image: GeneratedImage, mode: str, class_noun: str | None) -> str:
    """The text CLIP-T compares ``image`` with.

    ``without_token`` (default): the prompt with the identifier removed (``a dog in the jungle``), i.e. the
    metadata's ``class_prompt``, else its ``prompt`` minus ``token``; ``with_token``: the prompt as generated.
    Prompts the metadata lacks are rebuilt from the DreamBooth template ``prompt_index`` and the class noun.
    """
    if mode not in CLIP_T_PROMPTS:
        raise ValueError(f"clip_t_prompt must be one of {CLIP_T_PROMPTS}, got {mode!r}")
    if mode == "without_token":
        if image.class_prompt:
            return image.class_prompt
        if image.prompt and image.token:
            return _without_token(image.prompt, image.token)
    elif image.prompt:
        return image.prompt
    noun = image.class_noun or class_noun
    if not noun:
        raise EvaluationInputError(
            f"{image.path}: no prompt in {METADATA_FILE} and no class noun for subject {image.subject!r} "
            f"(add it to --class_nouns or REAL/{CLASS_TABLE_FILE})"
        )
    templates = prompt_templates(noun)
    if not 0 <= image.prompt_index < len(templates):
        raise EvaluationInputError(
            f"{image.path}: prompt index {image.prompt_index} is outside the {len(templates)} DreamBooth prompts "
            f"and the metadata records no prompt"
        )
    token = None if mode == "without_token" else (image.token or DEFAULT_TOKEN)
    return fill(templates[image.prompt_index], token, noun)

"""One picture of a prompt set: the first image of every prompt with the prompt written under it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..fileio import save_png_atomic

SHEET_FILE = "contact_sheet.png"
COLUMNS = 5
CELL = 192        # pixels per image side on the sheet (small models' 64-px images are enlarged)
TEXT_LINES = 3


def contact_sheet(folder: Path, records: list[dict]) -> Path | None:
    """``folder/contact_sheet.png`` from the lowest-seed image of each prompt in ``records`` (generate's
    metadata records, ``file`` relative to ``folder``); None when no image exists yet."""
    first: dict[int, dict] = {}
    for record in sorted(records, key=lambda r: (r["prompt_index"], r["seed"])):
        if record["prompt_index"] not in first and (folder / record["file"]).is_file():
            first[record["prompt_index"]] = record
    if not first:
        return None
    font = ImageFont.load_default()
    line_height = 12
    caption_height = TEXT_LINES * line_height + 6
    rows = -(-len(first) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * CELL, rows * (CELL + caption_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, record in enumerate(first.values()):
        x, y = (k % COLUMNS) * CELL, (k // COLUMNS) * (CELL + caption_height)
        with Image.open(folder / record["file"]) as image:
            sheet.paste(image.convert("RGB").resize((CELL, CELL), Image.Resampling.NEAREST), (x, y))
        lines = textwrap.wrap(f"{record['prompt_index']:02d} {record['prompt']}", width=CELL // 6)[:TEXT_LINES]
        for n, line in enumerate(lines):
            draw.text((x + 3, y + CELL + 3 + n * line_height), line, fill="black", font=font)
    path = folder / SHEET_FILE
    save_png_atomic(sheet, path)
    return path

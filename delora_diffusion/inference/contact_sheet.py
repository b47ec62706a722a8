"""Pictures with their prompts written on them: a prompt set's contact sheet (the first image of every prompt,
the prompt under it) and captioned grids (a row of images under each prompt, e.g. validation)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..fileio import save_png_atomic

SHEET_FILE = "contact_sheet.png"
COLUMNS = 5
CELL = 192  # pixels per image side on the sheet (small models' 64-px images are enlarged)
TEXT_LINES = 3
LINE_HEIGHT = 12  # of PIL's default bitmap font
MIN_GRID_CELL = 128  # grid images smaller than this are enlarged (nearest) so the caption fits a row


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
    line_height = LINE_HEIGHT
    caption_height = TEXT_LINES * line_height + 6
    columns = min(COLUMNS, len(first))
    rows = -(-len(first) // columns)
    sheet = Image.new("RGB", (columns * CELL, rows * (CELL + caption_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, record in enumerate(first.values()):
        x, y = (k % columns) * CELL, (k // columns) * (CELL + caption_height)
        with Image.open(folder / record["file"]) as image:
            # Enlarged pixels stay sharp blocks; reduced images (512 px and up) are filtered, not aliased.
            resample = Image.Resampling.NEAREST if max(image.size) <= CELL else Image.Resampling.LANCZOS
            sheet.paste(image.convert("RGB").resize((CELL, CELL), resample), (x, y))
        lines = textwrap.wrap(f"{record['prompt_index']:02d} {record['prompt']}", width=CELL // 6)[:TEXT_LINES]
        for n, line in enumerate(lines):
            draw.text((x + 3, y + CELL + 3 + n * line_height), line, fill="black", font=font)
    path = folder / SHEET_FILE
    save_png_atomic(sheet, path)
    return path


def grid_layout(image_side: int) -> tuple[int, int]:
    """(cell side, caption band height) in pixels of ``captioned_grid`` for images of ``image_side``: small
    images are enlarged by a whole factor, so every pixel of theirs stays a block of equal pixels."""
    return image_side * max(1, -(-MIN_GRID_CELL // image_side)), TEXT_LINES * LINE_HEIGHT + 6


def captioned_grid(rows: list[tuple[str, list[Image.Image]]]) -> Image.Image:
    """One row per ``(caption, images)`` (square images of one size), the caption written in a band above its
    images; row r, column c starts at ``(c · cell, r · (band + cell) + band)`` (``grid_layout``)."""
    side, band = grid_layout(max(image.size[0] for _, images in rows for image in images))
    columns = max(len(images) for _, images in rows)
    font = ImageFont.load_default()
    grid = Image.new("RGB", (columns * side, len(rows) * (band + side)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (caption, images) in enumerate(rows):
        top = r * (band + side)
        for n, line in enumerate(textwrap.wrap(caption, width=max(10, columns * side // 6))[:TEXT_LINES]):
            draw.text((3, top + 3 + n * LINE_HEIGHT), line, fill="black", font=font)
        for c, image in enumerate(images):
            grid.paste(image.convert("RGB").resize((side, side), Image.Resampling.NEAREST), (c * side, top + band))
    return grid

"""The demo subject: a toy robot the project draws itself, in a few views (no images from elsewhere).

``render_views()`` draws it deterministically with PIL primitives (4× supersampled, then downscaled
for smooth edges): an orange robot with a teal visor, round antenna and a star on its chest, seen at
different positions, sizes, tilts and backgrounds. ``subjects/demo/`` holds the rendered PNGs;
``python -m delora_diffusion.data.demo_subject --out subjects/demo`` redraws them.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..fileio import atomic_path

DEMO_TOKEN, DEMO_CLASS_NOUN = "sks", "toy"
SIZE = 128
SUPERSAMPLE = 4

ORANGE, DARK_ORANGE, TEAL, WHITE, INK, GOLD = "#f28c28", "#c0641a", "#1fb5ad", "#fafafa", "#2b2b2b", "#ffd23f"


@dataclass(frozen=True)
class ViewSpec:
    """Centre (fractions of the image), scale (fraction of the image height), tilt (degrees), colours."""

    cx: float
    cy: float
    scale: float
    tilt: float
    background: str
    floor: str


VIEWS = (
    ViewSpec(0.50, 0.52, 0.78, 0.0, "#dfe9f5", "#b8c4d1"),
    ViewSpec(0.42, 0.55, 0.66, -12.0, "#f6e7d8", "#d9b99b"),
    ViewSpec(0.58, 0.50, 0.84, 9.0, "#e3f1e0", "#a9c9a1"),
    ViewSpec(0.50, 0.58, 0.56, 4.0, "#efe3f4", "#c6add2"),
    ViewSpec(0.47, 0.50, 0.72, -5.0, "#f4f1dc", "#cfc8a0"),
)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_robot(size: int) -> Image.Image:
    """The robot alone on a transparent square canvas of ``size`` pixels."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    u = size / 100.0  # drawing units: the robot spans about 100 × 100

    def box(x0, y0, x1, y1):
        return [x0 * u, y0 * u, x1 * u, y1 * u]

    d.line(box(50, 6, 50, 16), fill=INK, width=max(1, round(2.5 * u)))        # antenna
    d.ellipse(box(45, 1, 55, 11), fill=GOLD, outline=INK, width=max(1, round(u)))
    d.rounded_rectangle(box(28, 14, 72, 44), radius=7 * u, fill=ORANGE, outline=INK, width=max(1, round(1.5 * u)))
    d.rounded_rectangle(box(33, 21, 67, 35), radius=6 * u, fill=TEAL, outline=INK, width=max(1, round(u)))
    for ex in (42, 58):                                                          # eyes on the visor
        d.ellipse(box(ex - 4, 24, ex + 4, 32), fill=WHITE)
        d.ellipse(box(ex - 1.8, 26.2, ex + 1.8, 29.8), fill=INK)
    d.rectangle(box(45, 44, 55, 48), fill=DARK_ORANGE, outline=INK, width=max(1, round(u)))   # neck
    d.rounded_rectangle(box(24, 48, 76, 86), radius=6 * u, fill=ORANGE, outline=INK, width=max(1, round(1.5 * u)))
    d.polygon([(x * u, y * u) for x, y in _star(50, 66, 11)], fill=GOLD, outline=INK)
    for x0 in (12, 76):                                                           # arms
        d.rounded_rectangle(box(x0, 52, x0 + 12, 76), radius=5 * u, fill=DARK_ORANGE, outline=INK,
                            width=max(1, round(u)))
    for x0 in (32, 56):                                                           # legs
        d.rounded_rectangle(box(x0, 86, x0 + 12, 98), radius=3 * u, fill=TEAL, outline=INK, width=max(1, round(u)))
    return image


def render_view(spec: ViewSpec, size: int = SIZE) -> Image.Image:
    """One RGB view of the robot on a two-tone background."""
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), spec.background)
    ImageDraw.Draw(canvas).rectangle([0, int(big * 0.7), big, big], fill=spec.floor)
    robot_size = int(big * spec.scale)
    robot = _draw_robot(robot_size).rotate(spec.tilt, resample=Image.BICUBIC, expand=True)
    x = int(spec.cx * big - robot.width / 2)
    y = int(spec.cy * big - robot.height / 2)
    canvas.paste(robot, (x, y), robot)
    return canvas.resize((size, size), Image.LANCZOS)


def render_views(size: int = SIZE) -> list[Image.Image]:
    return [render_view(spec, size) for spec in VIEWS]


def write_views(out: str | Path, size: int = SIZE) -> list[Path]:
    """Render every view to ``out/robot-{k}.png`` (atomic writes); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image in enumerate(render_views(size)):
        path = out / f"robot-{k}.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", optimize=True)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the demo subject (a toy robot) in several views.")
    parser.add_argument("--out", default="subjects/demo", help="folder (default: %(default)s)")
    parser.add_argument("--size", type=int, default=SIZE, help="pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in write_views(args.out, args.size):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

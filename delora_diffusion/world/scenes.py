"""The world's places: one procedural scene per context prompt of the DreamBooth object prompt list.

Each ``Context`` paints a background on a square RGB canvas and says where an object stands in it
(``ground``, a fraction of the height) and whether something covers the object's lower part (water,
milk) or mirrors it. ``studio`` is the plain backdrop of "a photo of a {class}" and the property prompts.
All 20 contexts are drawn distinctly; none is mapped onto another.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import ImageDraw

Draw = Callable[[ImageDraw.ImageDraw, random.Random, int], None]


@dataclass(frozen=True)
class Context:
    """A place: ``phrase`` is the prompt's words after the class noun ("in the snow")."""

    name: str
    phrase: str
    draw: Draw
    ground: float = 0.92  # where the object's base stands, fraction of the image height
    cover: str | None = None  # "water" or "milk": a surface over the object's lower part
    mirror: bool = False  # a reflection of the object below its base


def _jit(rng: random.Random, rgb, amount: int = 12):
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def _sky(d, rng, s, horizon: float, top=(150, 195, 240), bottom=(205, 228, 250)):
    h = int(s * horizon)
    for y in range(0, h, 4):
        t = y / max(1, h)
        d.rectangle([0, y, s, y + 4], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))


def _studio(d, rng, s):
    wall = _jit(
        rng, rng.choice([(226, 232, 242), (244, 232, 220), (228, 240, 226), (238, 228, 242), (240, 238, 222)]), 8
    )
    d.rectangle([0, 0, s, s], fill=wall)
    d.rectangle([0, int(s * 0.74), s, s], fill=tuple(int(c * 0.82) for c in wall))


def _jungle(d, rng, s):
    d.rectangle([0, 0, s, s], fill=(24, 70, 34))
    for _ in range(5):
        x = rng.uniform(0, s)
        d.line([x, 0, x + rng.uniform(-20, 20), s], fill=(70, 110, 40), width=int(s * 0.015))
    for _ in range(70):
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.04, 0.09) * s
        green = _jit(rng, rng.choice([(40, 130, 50), (60, 160, 60), (30, 100, 40), (90, 170, 60)]), 15)
        d.ellipse([x - r, y - r * 0.45, x + r, y + r * 0.45], fill=green)
    d.rectangle([0, int(s * 0.9), s, s], fill=(50, 60, 30))


def _snow(d, rng, s):
    _sky(d, rng, s, 0.55, (175, 190, 210), (215, 222, 232))
    d.rectangle([0, int(s * 0.55), s, s], fill=(246, 248, 252))
    for _ in range(6):
        x, w = rng.uniform(0, s), rng.uniform(0.2, 0.4) * s
        d.ellipse([x - w, s * 0.5, x + w, s * 0.62], fill=(236, 240, 248))
    for _ in range(60):
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.006, 0.012) * s
        d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))


def _beach(d, rng, s):
    _sky(d, rng, s, 0.42)
    d.rectangle([0, int(s * 0.4), s, int(s * 0.56)], fill=(30, 110, 190))
    d.line([0, s * 0.56, s, s * 0.56], fill=(240, 250, 255), width=int(s * 0.02))
    d.rectangle([0, int(s * 0.57), s, s], fill=(236, 206, 140))
    for _ in range(50):
        x, y = rng.uniform(0, s), rng.uniform(0.6, 1) * s
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(205, 170, 110))


def _cobblestone(d, rng, s):
    d.rectangle([0, 0, s, s], fill=(60, 58, 56))
    step = s / 7
    for row in range(8):
        for col in range(8):
            x = col * step + (row % 2) * step / 2 - step / 2
            y = row * step
            grey = _jit(rng, (130, 126, 120), 22)
            d.rounded_rectangle([x + 3, y + 3, x + step - 3, y + step - 3], radius=step * 0.3, fill=grey)


def _pink_fabric(d, rng, s):
    d.rectangle([0, 0, s, s], fill=(236, 150, 190))
    for k in range(-4, 10):
        off = k * s / 6 + rng.uniform(-8, 8)
        points = [(x, off + x * 0.5 + math.sin(x / s * 6 + k) * s * 0.03) for x in range(0, s + 8, 8)]
        d.line(points, fill=(250, 190, 215), width=int(s * 0.04))
        d.line([(x, y + s * 0.05) for x, y in points], fill=(205, 110, 155), width=int(s * 0.02))


def _wooden_floor(d, rng, s):
    d.rectangle([0, 0, s, s], fill=(150, 100, 55))
    plank = s / 6
    for row in range(7):
        y = row * plank
        d.rectangle([0, y, s, y + plank], fill=_jit(rng, (165, 110, 62), 14))
        d.line([0, y, s, y], fill=(90, 55, 30), width=3)
        x = rng.uniform(0, s)
        d.line([x, y, x, y + plank], fill=(90, 55, 30), width=3)
        for _ in range(3):
            gy = y + rng.uniform(0.2, 0.8) * plank
            d.line([rng.uniform(0, s / 2), gy, rng.uniform(s / 2, s), gy], fill=(135, 88, 48), width=2)


def _city(d, rng, s):
    _sky(d, rng, s, 0.8, (250, 180, 120), (180, 170, 210))
    x = -rng.uniform(0, 20)
    while x < s:
        w, h = rng.uniform(0.12, 0.22) * s, rng.uniform(0.35, 0.7) * s
        colour = _jit(rng, (70, 76, 96), 14)
        d.rectangle([x, s * 0.82 - h, x + w, s * 0.82], fill=colour)
        for wy in range(int(s * 0.82 - h + 8), int(s * 0.82 - 6), 14):
            for wx in range(int(x + 6), int(x + w - 6), 12):
                if rng.random() < 0.6:
                    d.rectangle([wx, wy, wx + 5, wy + 7], fill=(250, 220, 120))
        x += w + 2
    d.rectangle([0, int(s * 0.82), s, s], fill=(90, 90, 95))


def _mountain(d, rng, s):
    _sky(d, rng, s, 0.75)
    for _ in range(3):
        peak_x, peak_y = rng.uniform(0.1, 0.9) * s, rng.uniform(0.12, 0.3) * s
        base = rng.uniform(0.45, 0.6) * s
        colour = _jit(rng, (110, 110, 140), 12)
        d.polygon([(peak_x - base, s * 0.75), (peak_x, peak_y), (peak_x + base, s * 0.75)], fill=colour)
        cap = 0.25
        d.polygon(
            [
                (peak_x - base * cap, peak_y + (s * 0.75 - peak_y) * cap),
                (peak_x, peak_y),
                (peak_x + base * cap, peak_y + (s * 0.75 - peak_y) * cap),
            ],
            fill=(250, 250, 252),
        )
    d.rectangle([0, int(s * 0.74), s, s], fill=(100, 160, 80))


def _blue_house(d, rng, s):
    _sky(d, rng, s, 0.7)
    x0 = rng.choice([0.02, 0.45]) * s
    w = 0.52 * s
    d.rectangle([x0, s * 0.38, x0 + w, s * 0.78], fill=_jit(rng, (50, 100, 200), 10))
    d.polygon([(x0 - 10, s * 0.4), (x0 + w / 2, s * 0.15), (x0 + w + 10, s * 0.4)], fill=(150, 50, 40))
    d.rectangle([x0 + w * 0.4, s * 0.58, x0 + w * 0.6, s * 0.78], fill=(250, 250, 250))
    for wx in (x0 + w * 0.12, x0 + w * 0.7):
        d.rectangle([wx, s * 0.47, wx + w * 0.18, s * 0.6], fill=(230, 240, 250), outline=(255, 255, 255), width=3)
    d.rectangle([0, int(s * 0.76), s, s], fill=(90, 170, 80))


def _purple_rug_forest(d, rng, s):
    d.rectangle([0, 0, s, s], fill=(40, 80, 45))
    for _ in range(9):
        x = rng.uniform(0, s)
        d.rectangle([x, s * 0.2, x + s * 0.05, s * 0.75], fill=(90, 60, 35))
        r = rng.uniform(0.1, 0.18) * s
        d.ellipse([x - r, s * 0.05, x + r + s * 0.05, s * 0.05 + 2 * r], fill=_jit(rng, (30, 110, 45), 15))
    d.rectangle([0, int(s * 0.7), s, s], fill=(70, 60, 40))
    d.rounded_rectangle([s * 0.08, s * 0.74, s * 0.92, s * 0.98], radius=s * 0.04, fill=(120, 50, 160))
    d.rounded_rectangle(
        [s * 0.13, s * 0.78, s * 0.87, s * 0.94], radius=s * 0.03, outline=(190, 120, 220), width=int(s * 0.015)
    )


def _wheat_field(d, rng, s):
    _sky(d, rng, s, 0.45)
    d.rectangle([0, int(s * 0.43), s, s], fill=(214, 172, 70))
    for _ in range(140):
        x, y = rng.uniform(0, s), rng.uniform(0.43, 1.0) * s
        d.line([x, y, x + rng.uniform(-3, 3), y - s * 0.07], fill=_jit(rng, (240, 200, 90), 20), width=3)
        d.ellipse([x - 3, y - s * 0.08, x + 3, y - s * 0.06], fill=(190, 140, 50))


def _autumn_tree(d, rng, s):
    _sky(d, rng, s, 0.78, (200, 215, 235), (235, 225, 210))
    tx = rng.choice([0.22, 0.78]) * s
    d.rectangle([tx - s * 0.05, s * 0.35, tx + s * 0.05, s * 0.8], fill=(100, 60, 30))
    for _ in range(45):
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.3) * s
        x, y, rr = tx + math.cos(a) * r, s * 0.3 + math.sin(a) * r * 0.7, rng.uniform(0.04, 0.08) * s
        colour = rng.choice([(220, 90, 30), (240, 150, 30), (200, 50, 30), (245, 190, 50)])
        d.ellipse([x - rr, y - rr, x + rr, y + rr], fill=_jit(rng, colour, 15))
    d.rectangle([0, int(s * 0.78), s, s], fill=(150, 120, 70))
    for _ in range(40):
        x, y = rng.uniform(0, s), rng.uniform(0.8, 1.0) * s
        d.ellipse([x - 4, y - 2, x + 4, y + 2], fill=rng.choice([(220, 90, 30), (240, 150, 30)]))


def _eiffel_tower(d, rng, s):
    _sky(d, rng, s, 0.85, (190, 210, 235), (235, 230, 225))
    tx, h = rng.choice([0.25, 0.5, 0.75]) * s, 0.78 * s
    base_y, top_y = s * 0.85, s * 0.85 - h
    colour = (85, 70, 60)
    for side in (-1, 1):
        d.line(
            [tx + side * s * 0.2, base_y, tx + side * s * 0.02, top_y + h * 0.15, tx, top_y],
            fill=colour,
            width=int(s * 0.025),
        )
    for frac, half in ((0.35, 0.12), (0.6, 0.07), (0.8, 0.04)):
        y = base_y - h * frac
        d.rectangle([tx - half * s, y - 4, tx + half * s, y + 4], fill=colour)
    d.arc([tx - s * 0.12, base_y - h * 0.3, tx + s * 0.12, base_y + h * 0.1], 180, 360, fill=colour, width=6)
    d.rectangle([0, int(base_y), s, s], fill=(150, 145, 130))


def _water_surface(d, rng, s, base, line):
    d.rectangle([0, 0, s, s], fill=base)
    for _ in range(26):
        x, y, w = rng.uniform(-20, s), rng.uniform(0, s), rng.uniform(0.1, 0.25) * s
        d.arc([x, y, x + w, y + s * 0.05], 200, 340, fill=line, width=3)


def _water(d, rng, s):
    _water_surface(d, rng, s, (40, 110, 185), (140, 200, 240))


def _milk(d, rng, s):
    _water_surface(d, rng, s, (246, 243, 232), (210, 205, 190))


def _sunflowers(d, rng, s):
    _sky(d, rng, s, 0.4)
    d.rectangle([0, int(s * 0.38), s, s], fill=(80, 160, 60))
    for _ in range(60):
        x, y = rng.uniform(0, s), rng.uniform(0.4, 1) * s
        d.line([x, y, x + rng.uniform(-3, 3), y - 8], fill=(50, 120, 40), width=2)
    for _ in range(9):
        x = rng.choice([rng.uniform(0, 0.27), rng.uniform(0.73, 1.0)]) * s
        y, r = rng.uniform(0.3, 0.9) * s, rng.uniform(0.05, 0.08) * s
        d.line([x, y, x, s], fill=(50, 120, 40), width=4)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(250, 205, 30))
        d.ellipse([x - r * 0.45, y - r * 0.45, x + r * 0.45, y + r * 0.45], fill=(100, 60, 20))


def _mirror(d, rng, s):
    d.rectangle([0, 0, s, int(s * 0.62)], fill=(70, 72, 80))
    for y in range(int(s * 0.62), s, 4):
        t = (y - s * 0.62) / (s * 0.38)
        d.rectangle([0, y, s, y + 4], fill=tuple(int(190 + 40 * t) for _ in range(3)))
    d.line([0, s * 0.62, s, s * 0.62], fill=(240, 240, 245), width=4)


def _sidewalk_crowd(d, rng, s):
    _sky(d, rng, s, 0.45, (200, 205, 215), (220, 220, 225))
    d.rectangle([0, int(s * 0.1), s, int(s * 0.6)], fill=(150, 140, 135))
    for _ in range(7):
        x, h = rng.uniform(0, s), rng.uniform(0.22, 0.3) * s
        colour = rng.choice([(200, 50, 50), (40, 80, 170), (60, 140, 70), (220, 170, 40), (60, 60, 60)])
        d.rounded_rectangle([x - s * 0.04, s * 0.62 - h * 0.7, x + s * 0.04, s * 0.62], radius=6, fill=colour)
        d.ellipse([x - s * 0.03, s * 0.62 - h, x + s * 0.03, s * 0.62 - h * 0.72], fill=(225, 180, 140))
    d.rectangle([0, int(s * 0.62), s, s], fill=(185, 185, 180))
    for y in range(int(s * 0.62), s, int(s * 0.1)):
        d.line([0, y, s, y], fill=(150, 150, 145), width=3)
    for x in range(0, s, int(s * 0.2)):
        d.line([x, s * 0.62, x, s], fill=(150, 150, 145), width=3)


def _dirt_road(d, rng, s):
    _sky(d, rng, s, 0.4)
    d.rectangle([0, int(s * 0.38), s, s], fill=(90, 150, 70))
    d.polygon([(s * 0.42, s * 0.38), (s * 0.58, s * 0.38), (s * 1.05, s), (-s * 0.05, s)], fill=(150, 105, 65))
    for side in (-1, 1):
        d.line([s * 0.5 + side * s * 0.03, s * 0.4, s * 0.5 + side * s * 0.28, s], fill=(115, 78, 45), width=7)
    for _ in range(30):
        x, y = rng.uniform(0.2, 0.8) * s, rng.uniform(0.5, 1) * s
        d.ellipse([x - 3, y - 2, x + 3, y + 2], fill=(120, 85, 55))


def _white_rug(d, rng, s):
    d.rectangle([0, 0, s, s], fill=(232, 228, 220))
    for _ in range(320):
        x, y = rng.uniform(0, s), rng.uniform(0, s)
        d.line([x, y, x + rng.uniform(-5, 5), y + rng.uniform(4, 9)], fill=_jit(rng, (212, 206, 196), 10), width=2)


STUDIO = Context("studio", "", _studio, ground=0.9)
CONTEXTS: tuple[Context, ...] = (
    Context("jungle", "in the jungle", _jungle, 0.94),
    Context("snow", "in the snow", _snow, 0.9),
    Context("beach", "on the beach", _beach, 0.92),
    Context("cobblestone", "on a cobblestone street", _cobblestone, 0.93),
    Context("pink_fabric", "on top of pink fabric", _pink_fabric, 0.92),
    Context("wooden_floor", "on top of a wooden floor", _wooden_floor, 0.92),
    Context("city", "with a city in the background", _city, 0.94),
    Context("mountain", "with a mountain in the background", _mountain, 0.94),
    Context("blue_house", "with a blue house in the background", _blue_house, 0.94),
    Context("purple_rug_forest", "on top of a purple rug in a forest", _purple_rug_forest, 0.92),
    Context("wheat_field", "with a wheat field in the background", _wheat_field, 0.94),
    Context("autumn_tree", "with a tree and autumn leaves in the background", _autumn_tree, 0.94),
    Context("eiffel_tower", "with the Eiffel Tower in the background", _eiffel_tower, 0.94),
    Context("water", "floating on top of water", _water, 0.8, cover="water"),
    Context("milk", "floating in an ocean of milk", _milk, 0.8, cover="milk"),
    Context("sunflowers", "on top of green grass with sunflowers around it", _sunflowers, 0.94),
    Context("mirror", "on top of a mirror", _mirror, 0.74, mirror=True),
    Context("sidewalk", "on top of the sidewalk in a crowded street", _sidewalk_crowd, 0.93),
    Context("dirt_road", "on top of a dirt road", _dirt_road, 0.93),
    Context("white_rug", "on top of a white rug", _white_rug, 0.92),
)
BY_PHRASE = {c.phrase: c for c in CONTEXTS}
# every place a scene can be: the label set of context judgements ("studio": no context in the prompt)
CONTEXT_NAMES: tuple[str, ...] = (STUDIO.name, *(c.name for c in CONTEXTS))
BY_NAME = {c.name: c for c in (STUDIO, *CONTEXTS)}

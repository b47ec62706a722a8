"""The world's objects: four classes of things, each with procedural instances, drawn with PIL.

An ``Instance`` is one subject the way a DreamBooth subject is one dog: a class noun plus colours,
a pattern and part choices that stay the same in every picture of it. ``draw_object`` paints it on a
transparent canvas in a 100 × 100 unit box (its base on the bottom edge); the property prompts of the
DreamBooth protocol (red, purple, shiny, wet, cube shaped) are procedural changes of the drawing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from PIL import Image, ImageChops, ImageDraw

CLASS_NOUNS = ("toy", "backpack", "teapot", "stuffed animal")
PROPERTIES = ("red", "purple", "shiny", "wet", "cube shaped")
PATTERNS = ("plain", "stripes", "dots", "two-tone")
# How a pattern reads in a description ("a striped orange toy with teal parts"); plain bodies go unsaid.
PATTERN_WORDS = {"plain": "", "stripes": "striped", "dots": "dotted", "two-tone": "bicolor"}

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (210, 38, 38),
    "orange": (244, 138, 28),
    "yellow": (246, 212, 40),
    "green": (58, 168, 68),
    "teal": (28, 168, 162),
    "blue": (42, 88, 212),
    "purple": (128, 58, 190),
    "pink": (240, 128, 178),
    "white": (238, 238, 232),
    "grey": (128, 128, 134),
    "black": (42, 42, 48),
    "brown": (132, 80, 44),
}
INK = (28, 28, 32)
# Class signatures: parts every instance of a class shares, as real classes share features (a dog's black
# nose). Large, constant colours are what both a small generator and a small ViT pick up first.
STEEL, VISOR, STRAP, GOLD, MUZZLE = (186, 194, 204), (40, 60, 70), (34, 34, 38), (214, 170, 48), (245, 228, 196)
FUR_COLOURS = ("brown", "white", "grey", "yellow", "orange", "pink", "black", "blue", "teal")


@dataclass(frozen=True)
class Instance:
    """One subject: a class noun, its colour names, pattern, proportions (units of 100) and part choices."""

    class_noun: str
    main: str  # body colour
    accent: str  # parts: limbs, lid, pocket, ears or belly
    pattern: str  # on the body: plain, stripes, dots or two-tone (in the accent colour)
    width: float  # body width, units
    height: float  # body height, units
    part: int  # a class-specific part variant (antenna, pocket, spout, ears), 0..2
    head: float  # head / lid / flap size factor, 0.8..1.2

    def description(self) -> str:
        """The instance in alt-text words: "a striped orange toy with teal parts", "an orange teapot with gold parts"."""
        words = " ".join(w for w in (PATTERN_WORDS[self.pattern], self.main, self.class_noun) if w)
        article = "an" if words[0] in "aeiou" else "a"
        return f"{article} {words} with {self.accent} parts"


def sample_instance(class_noun: str, rng: random.Random) -> Instance:
    """A random instance of ``class_noun`` (every draw is a different subject)."""
    colours = list(FUR_COLOURS) if class_noun == "stuffed animal" else list(PALETTE)
    main = rng.choice(colours)
    accent = rng.choice([c for c in PALETTE if c != main])
    return Instance(
        class_noun=class_noun,
        main=main,
        accent=accent,
        pattern=rng.choice(PATTERNS),
        width=rng.uniform(0.85, 1.15),
        height=rng.uniform(0.85, 1.15),
        part=rng.randrange(3),
        head=rng.uniform(0.85, 1.15),
    )


def with_property(instance: Instance, prop: str | None) -> Instance:
    """The instance as a colour property prompt asks for it (``red``, ``purple``); others are drawn effects."""
    if prop in ("red", "purple"):
        accent = instance.accent if instance.accent != prop else ("white" if prop == "purple" else "yellow")
        return replace(instance, main=prop, accent=accent)
    return instance


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    if factor >= 1:
        return tuple(int(c + (255 - c) * (factor - 1)) for c in rgb)
    return tuple(int(c * factor) for c in rgb)


class _Pen:
    """Draws in 100 × 100 units on a square RGBA canvas; bodies get the instance's pattern and, in
    ``cube`` mode, become boxes seen from above-right."""

    def __init__(self, size: int, instance: Instance, cube: bool):
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self.u = size / 100.0
        self.instance, self.cube = instance, cube
        self.line = max(1, round(1.6 * self.u))

    def box(self, x0, y0, x1, y1):
        u = self.u
        return [x0 * u, y0 * u, x1 * u, y1 * u]

    def shape(self, kind: str, box, fill, outline=INK, radius: float = 8):
        b = self.box(*box)
        if kind == "ellipse":
            self.draw.ellipse(b, fill=fill, outline=outline, width=self.line)
        elif kind == "rounded":
            self.draw.rounded_rectangle(b, radius=radius * self.u, fill=fill, outline=outline, width=self.line)
        else:
            self.draw.rectangle(b, fill=fill, outline=outline, width=self.line)

    def poly(self, points, fill, outline=INK):
        self.draw.polygon([(x * self.u, y * self.u) for x, y in points], fill=fill, outline=outline, width=self.line)

    def body(self, kind: str, box, rgb: tuple[int, int, int] | None = None, patterned: bool = True, radius: float = 8):
        """A main body part (main colour and the instance's pattern unless ``rgb`` is given).

        In cube mode it becomes a box seen from above-right: a square front face as tall as the part's
        larger side, centred on it, with lit top and shaded side faces.
        """
        rgb = rgb or PALETTE[self.instance.main]
        x0, y0, x1, y1 = box
        if self.cube:
            side = min(0.85 * max(x1 - x0, y1 - y0), 74.0)
            depth = 0.3 * side
            cx, bottom = min((x0 + x1) / 2, 99 - depth - side / 2), y1  # the box stays on the canvas
            x0, x1, y0 = cx - side / 2, cx + side / 2, bottom - side
            self.poly([(x0, y0), (x0 + depth, y0 - depth), (x1 + depth, y0 - depth), (x1, y0)], _shade(rgb, 1.35))
            self.poly(
                [(x1, y0), (x1 + depth, y0 - depth), (x1 + depth, bottom - depth), (x1, bottom)], _shade(rgb, 0.7)
            )
            box = (x0, y0, x1, bottom)
            self.shape("rect", box, rgb)
            kind = "rect"
        else:
            self.shape(kind, box, rgb, radius=radius)
        if patterned and self.instance.pattern != "plain":
            self._pattern(kind, box, radius)

    def _pattern(self, kind: str, box, radius: float):
        size = self.image.size
        mask = Image.new("L", size, 0)
        inset = (box[0] + 1.5, box[1] + 1.5, box[2] - 1.5, box[3] - 1.5)
        mdraw, b = ImageDraw.Draw(mask), self.box(*inset)
        if kind == "ellipse":
            mdraw.ellipse(b, fill=255)
        elif kind == "rounded":
            mdraw.rounded_rectangle(b, radius=radius * self.u, fill=255)
        else:
            mdraw.rectangle(b, fill=255)
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        ldraw, accent, u = ImageDraw.Draw(layer), PALETTE[self.instance.accent], self.u
        x0, y0, x1, y1 = box
        # Sizes in units of 100; an object at 64 px is about 37 px tall, so a unit is 0.37 px. Stripes of 7 units
        # every 15 and dots of radius 4 stay 2-3 px wide: finer ones (3.5 of 8) fell below the VAE's 4-px cells
        # and came back as a plain body of a blended colour.
        if self.instance.pattern == "stripes":
            y = y0 + 5.0
            while y < y1:
                ldraw.rectangle([x0 * u, y * u, x1 * u, (y + 7.0) * u], fill=accent)
                y += 15.0
        elif self.instance.pattern == "two-tone":
            ldraw.rectangle([x0 * u, ((y0 + y1) / 2) * u, x1 * u, y1 * u], fill=accent)
        else:
            for row, y in enumerate(range(int(y0) + 7, int(y1), 14)):
                for x in range(int(x0) + 7 + (row % 2) * 7, int(x1), 14):
                    ldraw.ellipse([(x - 4.0) * u, (y - 4.0) * u, (x + 4.0) * u, (y + 4.0) * u], fill=accent)
        self.image.paste(layer, (0, 0), ImageChops.multiply(mask, layer.getchannel("A")))


def _toy(p: _Pen, i: Instance):
    """A robot: body, steel head with eyes or a visor, arms, legs, an antenna variant."""
    bw, bh, hw = 46 * i.width, 32 * i.height, 36 * i.head
    cx, legs_top = 50, 86
    p.shape("rounded", (cx - bw / 2 + 6, legs_top - 1, cx - 4, 100), PALETTE[i.accent], radius=3)
    p.shape("rounded", (cx + 4, legs_top - 1, cx + bw / 2 - 6, 100), PALETTE[i.accent], radius=3)
    top = legs_top - bh
    for side in (-1, 1):
        ax = cx + side * (bw / 2 + 5)
        p.shape("rounded", (ax - 5, top + 3, ax + 5, top + bh - 6), PALETTE[i.accent], radius=4)
    p.body("rounded", (cx - bw / 2, top, cx + bw / 2, legs_top), radius=6)
    hh = 26 * i.head
    htop = top - hh - 2
    p.body("rounded", (cx - hw / 2, htop, cx + hw / 2, top - 1), STEEL, patterned=False, radius=5)
    if i.part == 1:
        p.shape("rounded", (cx - hw / 2 + 4, htop + 6, cx + hw / 2 - 4, htop + hh - 8), VISOR, radius=4)
    else:
        for ex in (cx - hw / 5, cx + hw / 5):
            p.shape("ellipse", (ex - 4, htop + 7, ex + 4, htop + 15), PALETTE["white"])
            p.shape("ellipse", (ex - 1.5, htop + 9.5, ex + 1.5, htop + 12.5), INK, outline=None)
    if i.part in (0, 1):
        p.draw.line(p.box(cx, htop - 9, cx, htop), fill=INK, width=p.line)
        p.shape("ellipse", (cx - 4, htop - 13, cx + 4, htop - 5), PALETTE[i.accent])
    else:
        for ex in (cx - hw / 3, cx + hw / 3):
            p.draw.line(p.box(ex, htop - 8, ex, htop), fill=INK, width=p.line)
            p.shape("ellipse", (ex - 3, htop - 11, ex + 3, htop - 5), PALETTE[i.accent])


def _backpack(p: _Pen, i: Instance):
    """A backpack: tall rounded body, black handle loop and straps, front pocket variant, top flap, zips."""
    bw, bh = 56 * i.width, 70 * i.height
    cx, bottom = 50, 99
    top = bottom - bh
    p.draw.arc(p.box(cx - 10, top - 14, cx + 10, top + 6), 180, 360, fill=STRAP, width=3 * p.line)
    for side in (-1, 1):
        sx = cx + side * (bw / 2 + 1)
        p.shape("rounded", (sx - 5, top + 6, sx + 5, bottom - 6), STRAP, radius=3)
    p.body("rounded", (cx - bw / 2, top, cx + bw / 2, bottom), radius=16)
    flap = 18 * i.head
    p.shape("rounded", (cx - bw / 2 + 3, top + 2, cx + bw / 2 - 3, top + flap), _shade(PALETTE[i.main], 0.8), radius=12)
    pw, ph = bw * 0.62, bh * 0.34
    pocket = (cx - pw / 2, bottom - ph - 6, cx + pw / 2, bottom - 6)
    if i.part == 0:
        p.shape("rounded", pocket, PALETTE[i.accent], radius=6)
    elif i.part == 1:
        p.shape("ellipse", pocket, PALETTE[i.accent])
    else:
        p.shape("rect", pocket, PALETTE[i.accent])
        p.shape("rect", (pocket[0], pocket[1], pocket[2], pocket[1] + 6), _shade(PALETTE[i.accent], 0.75))
    p.draw.line(p.box(pocket[0] + 4, pocket[1] + 3, pocket[2] - 4, pocket[1] + 3), fill=STRAP, width=2 * p.line)
    p.draw.line(p.box(cx - bw / 2 + 6, top + flap + 3, cx + bw / 2 - 6, top + flap + 3), fill=STRAP, width=2 * p.line)


def _teapot(p: _Pen, i: Instance):
    """A teapot: round body, gold spout variant, gold handle and band, lid with a gold knob."""
    bw, bh = 60 * i.width, 44 * i.height
    cx, bottom = 54, 96
    top = bottom - bh
    spout = {
        0: [
            (cx - bw / 2 + 4, bottom - 18),
            (cx - bw / 2 - 16, top - 2),
            (cx - bw / 2 - 10, top - 6),
            (cx - bw / 2 + 8, bottom - 28),
        ],
        1: [
            (cx - bw / 2 + 4, bottom - 14),
            (cx - bw / 2 - 10, top + 6),
            (cx - bw / 2 - 6, top + 2),
            (cx - bw / 2 + 8, bottom - 26),
        ],
        2: [
            (cx - bw / 2 + 4, bottom - 16),
            (cx - bw / 2 - 20, bottom - 30),
            (cx - bw / 2 - 18, bottom - 36),
            (cx - bw / 2 + 6, bottom - 28),
        ],
    }[i.part]
    p.poly(spout, GOLD)
    hx = cx + bw / 2
    p.draw.ellipse(p.box(hx - 11, top + 3, hx + 11, bottom - 9), outline=INK, width=5 * p.line)
    p.draw.ellipse(p.box(hx - 9, top + 5, hx + 9, bottom - 11), outline=GOLD, width=3 * p.line)
    p.body("ellipse", (cx - bw / 2, top, cx + bw / 2, bottom + 2))
    p.shape("rect", (cx - bw / 3, bottom - 2, cx + bw / 3, bottom + 2), _shade(PALETTE[i.main], 0.7))
    lw, lh = bw * 0.5 * i.head, 10 * i.head
    p.shape("ellipse", (cx - lw / 2, top - lh / 2, cx + lw / 2, top + lh / 2 + 2), PALETTE[i.accent])
    p.shape("ellipse", (cx - 5, top - lh / 2 - 8, cx + 5, top - lh / 2 + 1), GOLD)
    p.shape("rect", (cx - bw / 2 + 2, top + bh * 0.2, cx + bw / 2 - 2, top + bh * 0.2 + 4), GOLD)


def _stuffed_animal(p: _Pen, i: Instance):
    """A plush creature (bear or dog-like): body, big head, ear variant, cream muzzle, belly patch, paws."""
    bw, bh = 46 * i.width, 38 * i.height
    cx, bottom = 50, 99
    fur, accent = PALETTE[i.main], PALETTE[i.accent]
    top = bottom - bh
    for side in (-1, 1):
        p.shape("ellipse", (cx + side * bw / 2 - 8, top + 6, cx + side * bw / 2 + 8, top + 22), fur)
        p.shape("ellipse", (cx + side * bw / 4 - 9, bottom - 12, cx + side * bw / 4 + 9, bottom), fur)
    p.body("ellipse", (cx - bw / 2, top, cx + bw / 2, bottom - 4))
    p.shape("ellipse", (cx - bw / 4, top + 8, cx + bw / 4, bottom - 10), accent)
    hs = 40 * i.head
    htop = top - hs + 8
    ear_y = htop + 4
    for side in (-1, 1):
        ex = cx + side * hs * 0.38
        if i.part == 0:  # round ears
            p.shape("ellipse", (ex - 8, ear_y - 8, ex + 8, ear_y + 8), fur)
            p.shape("ellipse", (ex - 4, ear_y - 4, ex + 4, ear_y + 4), accent, outline=None)
        elif i.part == 1:  # floppy ears
            p.shape("ellipse", (ex - 6 + side * 6, ear_y, ex + 6 + side * 6, ear_y + 24), accent)
        else:  # pointed ears
            p.poly([(ex - 8, ear_y + 6), (ex + side * 2, ear_y - 14), (ex + 8, ear_y + 6)], accent)
    p.body("ellipse", (cx - hs / 2, htop, cx + hs / 2, htop + hs), patterned=False)
    p.shape("ellipse", (cx - 11, htop + hs * 0.48, cx + 11, htop + hs * 0.48 + 15), MUZZLE)
    p.shape("ellipse", (cx - 4, htop + hs * 0.48 + 1, cx + 4, htop + hs * 0.48 + 6), INK, outline=None)
    for ex in (cx - hs / 5, cx + hs / 5):
        p.shape("ellipse", (ex - 2.5, htop + hs * 0.32, ex + 2.5, htop + hs * 0.32 + 5), INK, outline=None)


_DRAWERS = {"toy": _toy, "backpack": _backpack, "teapot": _teapot, "stuffed animal": _stuffed_animal}


def _shiny(image: Image.Image, rng: random.Random) -> Image.Image:
    """Glossy: stronger contrast and saturation, white highlights and a sparkle on the object."""
    from PIL import ImageEnhance

    alpha = image.getchannel("A")
    rgb = ImageEnhance.Contrast(ImageEnhance.Color(image.convert("RGB")).enhance(1.5)).enhance(1.25)
    glow = Image.new("RGBA", image.size, (0, 0, 0, 0))
    d, s = ImageDraw.Draw(glow), image.size[0] / 100.0
    bbox = alpha.getbbox() or (0, 0, *image.size)
    x0, y0 = bbox[0] / s, bbox[1] / s
    for k in range(3):
        hx, hy = x0 + 14 + 14 * k + rng.uniform(-3, 3), y0 + 18 + 10 * k
        d.ellipse([(hx - 6 + 2 * k) * s, (hy - 3) * s, (hx + 6 - 2 * k) * s, (hy + 3) * s], fill=(255, 255, 255, 230))
    out = rgb.convert("RGBA")
    out.putalpha(alpha)
    out.alpha_composite(Image.composite(glow, Image.new("RGBA", image.size, (0, 0, 0, 0)), alpha))
    sx, sy = bbox[2] / s - 8, bbox[1] / s + 6
    star = ImageDraw.Draw(out)
    star.polygon(
        [
            (sx * s, (sy - 8) * s),
            ((sx + 2) * s, (sy - 2) * s),
            ((sx + 8) * s, sy * s),
            ((sx + 2) * s, (sy + 2) * s),
            (sx * s, (sy + 8) * s),
            ((sx - 2) * s, (sy + 2) * s),
            ((sx - 8) * s, sy * s),
            ((sx - 2) * s, (sy - 2) * s),
        ],
        fill=(255, 255, 240, 255),
    )
    return out


def _wet(image: Image.Image, rng: random.Random) -> Image.Image:
    """Wet: darker, bluer colours and water drops on the object."""
    alpha = image.getchannel("A")
    r, g, b = (
        band.point(lambda v, f=f: int(v * f)) for band, f in zip(image.convert("RGB").split(), (0.6, 0.68, 0.85))
    )
    out = Image.merge("RGBA", (r, g, b, alpha))
    drops = Image.new("RGBA", image.size, (0, 0, 0, 0))
    d, s = ImageDraw.Draw(drops), image.size[0] / 100.0
    bbox = alpha.getbbox() or (0, 0, *image.size)
    for _ in range(16):
        x = rng.uniform(bbox[0], bbox[2]) / s
        y = rng.uniform(bbox[1], bbox[3]) / s
        d.ellipse([(x - 2) * s, (y - 3) * s, (x + 2) * s, (y + 3) * s], fill=(170, 215, 255, 255))
        d.ellipse([(x - 1) * s, (y - 2) * s, x * s, (y - 1) * s], fill=(255, 255, 255, 255))
    out.alpha_composite(Image.composite(drops, Image.new("RGBA", image.size, (0, 0, 0, 0)), alpha))
    return out


def draw_object(instance: Instance, size: int, prop: str | None = None, seed: int = 0) -> Image.Image:
    """The instance alone on a transparent ``size`` × ``size`` RGBA canvas, as ``prop`` asks.

    ``seed`` places the drawn effects (highlights, drops); the instance itself never changes with it.
    """
    if instance.class_noun not in _DRAWERS:
        raise ValueError(f"unknown class noun {instance.class_noun!r}; the world has {', '.join(CLASS_NOUNS)}")
    if prop is not None and prop not in PROPERTIES:
        raise ValueError(f"unknown property {prop!r}; the world has {', '.join(PROPERTIES)}")
    pen = _Pen(size, with_property(instance, prop), cube=prop == "cube shaped")
    _DRAWERS[instance.class_noun](pen, pen.instance)
    rng = random.Random(seed)
    if prop == "shiny":
        return _shiny(pen.image, rng)
    if prop == "wet":
        return _wet(pen.image, rng)
    return pen.image

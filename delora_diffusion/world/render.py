"""Scenes of the world: an instance in a context (or with a property), its caption and object mask.

A ``Scene`` is everything one picture depends on; ``render`` draws it deterministically (4× supersampled,
then downscaled) and returns the RGB image and the object's mask. Captions follow the DreamBooth
templates exactly: "a photo of a {class}" (studio backdrop), "a {class} {context phrase}", "a {property}
{class}", with an optional identifier token before the class noun ("a sks toy in the snow").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .objects import CLASS_NOUNS, PROPERTIES, Instance, draw_object, sample_instance
from .scenes import BY_NAME, BY_PHRASE, CONTEXTS, STUDIO, Context

SUPERSAMPLE = 4
DEFAULT_SIZE = 64


@dataclass(frozen=True)
class Pose:
    """Where the object stands: horizontal centre and height (fractions of the image), mirroring, tilt."""

    x: float = 0.5
    scale: float = 0.56
    flip: bool = False
    tilt: float = 0.0


def sample_pose(rng: random.Random) -> Pose:
    return Pose(
        x=rng.uniform(0.38, 0.62), scale=rng.uniform(0.5, 0.66), flip=rng.random() < 0.5, tilt=rng.uniform(-7, 7)
    )


@dataclass(frozen=True)
class Scene:
    """One picture: ``context`` is a context name ("studio" for photos and property prompts)."""

    instance: Instance
    context: str = "studio"
    prop: str | None = None
    pose: Pose = Pose()
    seed: int = 0  # background details and drawn effects

    def caption(self, token: str | None = None) -> str:
        return caption(self.instance.class_noun, self.context, self.prop, token)

    def detailed_caption(self, with_context: bool = True) -> str:
        """The caption alt-text would give: the instance described ("a photo of a striped orange toy with teal
        parts", "an orange toy with teal parts in the snow"), the context left out unless ``with_context``.
        Property scenes keep their template caption (the property changes what the description would say)."""
        if self.prop:
            return self.caption()
        described = self.instance.description()
        if not with_context:
            return described
        return f"a photo of {described}" if self.context == "studio" else f"{described} {BY_NAME[self.context].phrase}"


def caption(class_noun: str, context: str = "studio", prop: str | None = None, token: str | None = None) -> str:
    """The DreamBooth-template caption: "a photo of a toy", "a toy in the snow", "a red toy"; with
    ``token``: "a photo of sks toy" (DreamBooth's instance prompt), "a sks toy in the snow", "a red sks toy"."""
    noun = f"{token} {class_noun}" if token else class_noun
    if prop:
        return f"a {prop} {noun}"
    if context == "studio":
        return f"a photo of {noun}" if token else f"a photo of a {noun}"
    return f"a {noun} {BY_NAME[context].phrase}"


def parse_prompt(prompt: str, class_noun: str, token: str | None = None) -> tuple[str, str | None]:
    """(context name, property) of a DreamBooth-template prompt about ``class_noun``; ``ValueError`` if none.

    "a sks toy in the snow" -> ("snow", None); "a red toy" -> ("studio", "red"); "a photo of sks toy" ->
    ("studio", None).
    """
    words = prompt.strip()
    if token:
        words = words.replace(f" {token} ", " ")
    if words in (f"a photo of a {class_noun}", f"a photo of {class_noun}"):
        return "studio", None
    for prop in PROPERTIES:
        if words == f"a {prop} {class_noun}":
            return "studio", prop
    prefix = f"a {class_noun} "
    if words.startswith(prefix) and words[len(prefix) :] in BY_PHRASE:
        return BY_PHRASE[words[len(prefix) :]].name, None
    raise ValueError(f"{prompt!r} is not a toy-world prompt about {class_noun!r}")


def _place(scene: Scene, context: Context, big: int) -> tuple[Image.Image, tuple[int, int]]:
    pose = scene.pose
    height = int(big * pose.scale)
    obj = draw_object(scene.instance, height, scene.prop, seed=scene.seed)
    if pose.flip:
        obj = obj.transpose(Image.FLIP_LEFT_RIGHT)
    if pose.tilt:
        obj = obj.rotate(pose.tilt, resample=Image.BILINEAR, expand=True)
    x = int(pose.x * big - obj.width / 2)
    y = int(context.ground * big - obj.height + (obj.height - height) / 2)
    return obj, (x, y)


def render(scene: Scene, size: int = DEFAULT_SIZE) -> tuple[Image.Image, Image.Image]:
    """The scene as an RGB image and its object mask (mode "L", 255 where the object is visible)."""
    big = size * SUPERSAMPLE
    context = BY_NAME[scene.context]
    rng = random.Random(scene.seed)
    canvas = Image.new("RGB", (big, big))
    draw = ImageDraw.Draw(canvas)
    context.draw(draw, rng, big)
    obj, (x, y) = _place(scene, context, big)
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    layer.paste(obj, (x, y), obj)
    alpha = layer.getchannel("A")
    base_y = int(context.ground * big)
    box = alpha.getbbox() or (0, 0, big, big)
    if context.mirror:
        reflection = layer.transpose(Image.FLIP_TOP_BOTTOM)
        shift = 2 * base_y - big
        faded = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        faded.paste(reflection, (0, shift))
        faded.putalpha(faded.getchannel("A").point(lambda v: v * 45 // 100))
        canvas.paste(faded, (0, 0), faded)
    elif not context.cover:
        shadow = Image.new("L", (big, big), 0)
        for k, grow in enumerate((0.03, 0.015)):
            ImageDraw.Draw(shadow).ellipse(
                [
                    box[0] - big * grow,
                    base_y - big * (0.01 + grow / 2),
                    box[2] + big * grow,
                    base_y + big * (0.01 + grow / 2),
                ],
                fill=45 * (k + 1),
            )
        canvas.paste((0, 0, 0), (0, 0), shadow)
    if scene.prop == "wet":
        puddle = [box[0] - big * 0.06, base_y - big * 0.02, box[2] + big * 0.06, base_y + big * 0.04]
        draw.ellipse(puddle, fill=(120, 160, 200))
    canvas.paste(layer, (0, 0), layer)
    mask = alpha
    if context.cover:
        surface = Image.new("L", (big, big), 0)
        sdraw = ImageDraw.Draw(surface)
        line = int(box[3] - (box[3] - box[1]) * 0.22)
        sdraw.rectangle([0, line, big, big], fill=210 if context.cover == "water" else 255)
        colour = (40, 110, 185) if context.cover == "water" else (246, 243, 232)
        canvas.paste(colour, (0, 0), Image.composite(surface, Image.new("L", (big, big), 0), alpha))
        for k in range(3):
            y0 = line - big * 0.015 + k * big * 0.03
            draw.arc(
                [box[0] - big * 0.08, y0, box[2] + big * 0.08, y0 + big * 0.05],
                0,
                180,
                fill=(150, 200, 240) if context.cover == "water" else (215, 210, 195),
                width=SUPERSAMPLE * 2,
            )
        mask = Image.composite(Image.new("L", (big, big), 0), alpha, surface.point(lambda v: 255 if v else 0))
    if scene.context == "snow":
        for _ in range(18):
            fx, fy, r = rng.uniform(0, big), rng.uniform(0, big), rng.uniform(0.006, 0.012) * big
            draw.ellipse([fx - r, fy - r, fx + r, fy + r], fill=(255, 255, 255))
    image = canvas.resize((size, size), Image.LANCZOS)
    mask = mask.resize((size, size), Image.BILINEAR).point(lambda v: 255 if v >= 128 else 0)
    return image, mask


def sample_scene(
    rng: random.Random, class_noun: str | None = None, instance: Instance | None = None, kinds=(0.2, 0.65, 0.15)
) -> Scene:
    """A random scene: a studio photo, a context or a property with probabilities ``kinds``."""
    if instance is None:
        instance = sample_instance(class_noun or rng.choice(CLASS_NOUNS), rng)
    pick = rng.random()
    context, prop = "studio", None
    if kinds[0] <= pick < kinds[0] + kinds[1]:
        context = rng.choice(CONTEXTS).name
    elif pick >= kinds[0] + kinds[1]:
        prop = rng.choice(PROPERTIES)
    return Scene(instance, context, prop, sample_pose(rng), seed=rng.randrange(2**31))


__all__ = ["CONTEXTS", "STUDIO", "Pose", "Scene", "caption", "parse_prompt", "render", "sample_pose", "sample_scene"]

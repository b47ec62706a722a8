"""Personalisation subjects of the world: instances pretraining never drew.

Pretraining samples (class, main colour, accent colour) at random but skips the combinations listed
here, so a subject is new to the base model the way a user's own dog is new to Stable Diffusion:
it is made of known parts (colours, pattern, parts) in a combination the model has not seen.
One subject per class; three of them carry a pattern, which the VAE must bring through.
"""

from __future__ import annotations

from .objects import Instance

# The demo subject: an orange robot toy with teal limbs and antenna, a plain body, a visor, one antenna.
DEMO_SUBJECT = Instance(
    class_noun="toy", main="orange", accent="teal", pattern="plain", width=1.05, height=1.0, part=1, head=1.05
)
SUBJECTS = {
    "robot": DEMO_SUBJECT,
    "teapot": Instance(
        class_noun="teapot", main="white", accent="red", pattern="stripes", width=1.0, height=1.05, part=0, head=1.0
    ),
    "backpack": Instance(
        class_noun="backpack",
        main="yellow",
        accent="purple",
        pattern="two-tone",
        width=0.95,
        height=1.0,
        part=1,
        head=1.1,
    ),
    "bear": Instance(
        class_noun="stuffed animal",
        main="grey",
        accent="yellow",
        pattern="dots",
        width=1.05,
        height=1.0,
        part=0,
        head=1.0,
    ),
}
HELD_OUT_COMBINATIONS = frozenset((s.class_noun, s.main, s.accent) for s in SUBJECTS.values())

"""Personalisation subjects of the world: instances pretraining never drew.

Pretraining samples (class, main colour, accent colour) at random but skips the combinations listed
here, so a subject is new to the base model the way a user's own dog is new to Stable Diffusion:
it is made of known parts (colours, pattern, parts) in a combination the model has not seen.
"""

from __future__ import annotations

from .objects import Instance

# The demo subject: an orange robot toy with teal limbs and antenna, a plain body (the toy VAE blurs
# stripes of orange and teal into one brownish pink, the colour of many pretraining robots), visor, one antenna.
DEMO_SUBJECT = Instance(class_noun="toy", main="orange", accent="teal", pattern="plain", width=1.05,
                        height=1.0, part=1, head=1.05)
SUBJECTS = {"robot": DEMO_SUBJECT}
HELD_OUT_COMBINATIONS = frozenset((s.class_noun, s.main, s.accent) for s in SUBJECTS.values())

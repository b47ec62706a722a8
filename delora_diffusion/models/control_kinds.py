"""The kinds of semantic-map control, as a table (no torch here: the flag parsers read it).

The modules themselves are built in ``control.py``.
"""

from __future__ import annotations

CONTROLS = ("hint", "controlnet")
MODULE_NAMES = {"hint": "hint_encoder", "controlnet": "controlnet"}  # prefix of the extra tensors
# Default AdamW rates of the control module, ours, not the papers': the hint encoder is small and starts at
# zero; ControlNet's own paper trains at 1e-5.
CONTROL_LEARNING_RATES = {"hint": 1e-4, "controlnet": 1e-5}

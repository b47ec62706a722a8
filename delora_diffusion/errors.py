"""The one base of every error that means bad input (a flag, a file, a folder the user can correct).

Every command catches ``UserError`` and prints it as one line, ``PROG: error: MESSAGE``, with exit
status 2; anything else is a bug and keeps its traceback. A leaf: it imports nothing.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user can correct; the message names the flag or file and what was expected."""

"""The one exception evaluation raises for bad input."""

from __future__ import annotations

from ..errors import UserError


class EvaluationInputError(UserError):
    """A folder, file, flag or backbone the evaluator cannot use; the message names it and says what was expected."""

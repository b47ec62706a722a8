"""The one exception evaluation raises for bad input."""

from __future__ import annotations


class EvaluationInputError(ValueError):
    """A folder, file, flag or backbone the evaluator cannot use; the message names it and says what was expected."""

"""Typed errors. Every rejection says what was wrong and where."""
from __future__ import annotations


class FumdError(Exception):
    """Base class of all fumd errors."""


class ConfigError(FumdError, ValueError):
    """A configuration key is unknown, of the wrong type or out of range."""


class InputError(FumdError, ValueError):
    """A record given to ``Engine.cycle`` is invalid; the engine state is unchanged."""

    reason = "invalid_record"


class RecordFormatError(InputError):
    reason = "bad_format"


class DimensionError(InputError):
    reason = "wrong_dimension"


class NonFiniteError(InputError):
    reason = "non_finite"


class EmptyTextError(InputError):
    reason = "empty_text"


class LabelTypeError(InputError):
    reason = "bad_label"


class RewardError(InputError):
    reason = "bad_reward"


class VocabularyFullError(InputError):
    reason = "vocabulary_full"


class InputFileError(FumdError):
    """A file in the inbox cannot be used as a whole; it goes to ``failed/`` with this reason."""

    def __init__(self, reason: str, message: str, where: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.where = where

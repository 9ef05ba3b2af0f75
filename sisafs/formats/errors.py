"""Why an image could not take a protected path. The pipeline stores such files
encrypted whole (fail closed) and records the reason."""


class FormatError(Exception):
    """Base: the input cannot be protected as an image."""


class UnsupportedImage(FormatError):
    """Not an image we alter (unknown format, absurd dimensions, truncated, corrupt)."""


class RecordError(FormatError):
    """The restore record is missing, malformed, tampered with or under another key."""

"""The one exception family for a user's mistakes: the CLI prints these as a sentence, not a traceback."""


class GanforgeError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""


class GeneratorError(GanforgeError, ValueError):
    """A request an exported generator cannot fulfil (seeds, classes, truncation, its files); a ValueError too,
    so callers may catch the standard type."""

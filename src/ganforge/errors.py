"""The one exception family for a user's mistakes: the CLI prints these as a sentence, not a traceback."""


class GanforgeError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""

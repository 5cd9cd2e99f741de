"""The one exception type for mistakes a user can fix.

The CLI prints a `UserError` as a single line on stderr and exits with code 2;
every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, a bad option or a bad path: the message names the thing and the problem."""

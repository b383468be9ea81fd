"""The one exception type a user is meant to see.

Anything raised as `UserError` is printed by the CLI as a single line (what, which file, what to do)
with a non-zero exit; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

"""The one exception type the CLIs turn into a one-line message and exit code 2.

Library code raises ``UserError`` for anything the user can fix (bad input,
missing model, wrong settings).  The message is a single line that names the
problem and the fix.  Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, with a one-line fix."""

    exit_code = 2

    def __init__(self, message: str):
        if "\n" in message:
            raise ValueError("UserError messages must be one line")
        super().__init__(message)

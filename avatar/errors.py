"""One exception type for every user-facing failure.

Raise `AvatarError("what was wrong; what to do")` for anything a user can fix (bad file, missing
person, bad option). `cli.py` prints it as one line and exits non-zero; everything else is a bug and
keeps its traceback.
"""


class AvatarError(Exception):
    """A user mistake or bad input: printed as one line, exit code 2."""

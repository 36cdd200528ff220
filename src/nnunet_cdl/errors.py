"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class CdlError(Exception):
    """An error caused by the user's input (a file, a flag, a dataset), with the fix in its message."""

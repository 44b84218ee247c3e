"""The one exception type the CLI turns into a one-line message (no traceback)."""


class RepsrError(Exception):
    """A problem with the user's input (a file, a config value, an option), stated in one line."""

"""The one error type a user sees: a bad setting, said in one line."""


class ConfigError(ValueError):
    """A setting or input the suite refuses, with a one-line message that says what to change.

    Raised before any run directory is created, so a refused run leaves nothing behind.
    The command-line entry points catch it, print ``error: <message>`` and exit with status 2.
    """

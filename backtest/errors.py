"""User-facing errors: each carries one line that names the problem and the fix."""


class LstmbtError(Exception):
    """A problem with the user's input. The CLI prints its message as one line, no traceback."""


class ConfigError(LstmbtError):
    """A config file, ``--set`` override or CLI option that cannot be used as given."""


class DataError(LstmbtError):
    """Price data that is missing, malformed or too short for the requested run."""


class DataWarning(UserWarning):
    """Price data that is usable but suspect (stale closes, weekend bars, opens copied from the
    previous close); each message names the date and the fix, and the run's manifest keeps it."""

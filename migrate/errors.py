"""The exception tree. Outcomes are results; these are for bugs, bad config and refusals.

The CLI turns each into one line and an exit code (see `exit_code`).
"""


class MigrateError(Exception):
    """Root of every error the CLI reports as one clear line."""

    exit_code = 1


class ConfigError(MigrateError):
    """Bad inventory, spec or command-line input. Nothing ran, nothing changed."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class UnsafeAddress(ConfigError):
    """An address outside the inventory's allowed networks: refused before any packet."""


class PreflightFailed(MigrateError):
    """A check before the wave failed; nothing was changed."""


class StepFailed(MigrateError):
    """A step of a wave failed; the journal says what is done and what can be undone."""


class AwaitingApproval(MigrateError):
    """The run stopped at the go/no-go gate: nothing failed, someone must decide (resume with
    `--approve NAME`, or roll back). Not a StepFailed: nothing treats it as a failure."""

    exit_code = 4


class VerificationFailed(MigrateError):
    """The target differs from the source."""


class LockHeld(MigrateError):
    """Another run holds the wave's lock."""

    exit_code = 3

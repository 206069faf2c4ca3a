"""One exception tree. Every error a user can see is a DurableflowError with a one-line message."""

from __future__ import annotations


class DurableflowError(Exception):
    """Root of every error durableflow raises on purpose."""

    default_message = "durableflow error"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.default_message


class DefinitionError(DurableflowError):
    """A definition file cannot be read or parsed (malformed, hostile, too big)."""

    default_message = "invalid workflow definition"


class ValidationError(DefinitionError):
    """A definition parsed but breaks a rule: schema, graph, expression, missing file or program.

    `errors` holds every problem found, each one line naming the file, node/connection and field.
    """

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        first = self.errors[0] if self.errors else "invalid workflow definition"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(first + more)


class SecretsFileError(ValidationError):
    """A secrets file (or mapping) cannot be used: missing, readable by others, malformed.
    Its message names the file and the line, never a value."""


class ExpressionError(DefinitionError):
    """An expression does not compile, or failed while being evaluated."""

    default_message = "invalid expression"


class StorageError(DurableflowError):
    """The database failed; the message keeps what SQLite said."""

    default_message = "storage error"


class SchemaVersionError(StorageError):
    """The database was written by a newer durableflow; it is left untouched."""


class DatabaseCorrupt(StorageError):
    """SQLite reports the file is not a database, or that it is malformed."""


class DatabaseReadOnly(StorageError):
    """A write was attempted on a database opened read-only or on a read-only file."""


class DiskFull(StorageError):
    """SQLITE_FULL / SQLITE_IOERR: the transaction was rolled back, nothing half-written."""


class DatabaseBusy(StorageError):
    """The database stayed locked through every retry."""


class DatabaseUnavailable(StorageError):
    """The database server could not be reached (PostgreSQL: down, wrong host or port), or
    refused the login (wrong password, unknown role or database)."""


class ForkedConnection(StorageError):
    """A connection opened in one process was used in a forked child."""


class InvalidTransition(DurableflowError):
    """A status change that the lifecycle does not allow, or whose stored state moved on."""


class StaleLease(InvalidTransition):
    """A worker reported on a message whose lease it no longer holds (expired and taken over)."""


class NotFound(DurableflowError):
    default_message = "not found"


class RunNotFound(NotFound):
    default_message = "run not found"


class WorkflowNotFound(NotFound):
    default_message = "workflow not found"


class MessageNotFound(NotFound):
    default_message = "message not found"


class ScheduleNotFound(NotFound):
    default_message = "schedule not found"


class NodeError(DurableflowError):
    """A node body failed. `error_type` is what `retryOn` matches against; a failure that is
    not `retryable` is never retried, whatever the node's policy says."""

    retryable = True

    def __init__(self, message: str, *, error_type: str = "NodeError", exit_code: int | None = None,
                 error_types: tuple[str, ...] = ()):
        super().__init__(message)
        self.error_type = error_type
        self.exit_code = exit_code
        # The body's exception class and its bases (bare and module-qualified names), so that
        # retryOn: [OSError] also retries a FileNotFoundError, as `except OSError` would.
        self.error_types = error_types or (error_type,)


class SecretNotFound(NodeError):
    """A `{"$secret": NAME}` the worker could not resolve: retrying on the same worker cannot
    help, so the node fails at once."""

    retryable = False

    def __init__(self, message: str):
        super().__init__(message, error_type="SecretNotFound")


class NodeTimeout(NodeError):
    def __init__(self, message: str = "node timed out"):
        super().__init__(message, error_type="TimeoutError")


class NodeCancelled(NodeError):
    def __init__(self, message: str = "node cancelled"):
        super().__init__(message, error_type="Cancelled")


class WaitTimeout(DurableflowError):
    """`Engine.wait` gave up before the run finished."""

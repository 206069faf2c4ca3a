"""durableflow: a durable workflow engine that lives inside one SQLite file."""

from durableflow.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseReadOnly,
    DatabaseUnavailable,
    DefinitionError,
    DiskFull,
    DurableflowError,
    ExpressionError,
    InvalidTransition,
    NodeError,
    NotFound,
    RunNotFound,
    SchemaVersionError,
    SecretNotFound,
    SecretsFileError,
    StaleLease,
    StorageError,
    ValidationError,
    WaitTimeout,
    WorkflowNotFound,
)
from durableflow.clock import Clock, ManualClock
from durableflow.engine import Engine
from durableflow.run import NodeInstance, Run
from durableflow.runtimes.base import NodeContext
from durableflow.secrets import secret
from durableflow.authoring import (
    Body, CircuitBreaker, Defaults, NodeFunction, NodeRef, RateLimit, Resources, Retry, Workflow,
    node, workflow)

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "Run",
    "NodeInstance",
    "Clock",
    "ManualClock",
    "NodeContext",
    "Workflow",
    "Body",
    "NodeRef",
    "NodeFunction",
    "node",
    "workflow",
    "Retry",
    "RateLimit",
    "CircuitBreaker",
    "Resources",
    "Defaults",
    "secret",
    "DatabaseBusy",
    "DatabaseCorrupt",
    "DatabaseReadOnly",
    "DatabaseUnavailable",
    "DefinitionError",
    "DiskFull",
    "DurableflowError",
    "ExpressionError",
    "InvalidTransition",
    "NodeError",
    "NotFound",
    "RunNotFound",
    "SchemaVersionError",
    "SecretNotFound",
    "SecretsFileError",
    "StaleLease",
    "StorageError",
    "ValidationError",
    "WaitTimeout",
    "WorkflowNotFound",
    "__version__",
]

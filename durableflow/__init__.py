"""durableflow: a durable workflow engine that lives inside one SQLite file."""

from durableflow.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseReadOnly,
    DefinitionError,
    DiskFull,
    DurableflowError,
    ExpressionError,
    InvalidTransition,
    NodeError,
    NotFound,
    RunNotFound,
    SchemaVersionError,
    StaleLease,
    StorageError,
    ValidationError,
    WaitTimeout,
    WorkflowNotFound,
)
from durableflow.clock import Clock, ManualClock
from durableflow.engine import Engine
from durableflow.run import NodeInstance, Run

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "Run",
    "NodeInstance",
    "Clock",
    "ManualClock",
    "DatabaseBusy",
    "DatabaseCorrupt",
    "DatabaseReadOnly",
    "DefinitionError",
    "DiskFull",
    "DurableflowError",
    "ExpressionError",
    "InvalidTransition",
    "NodeError",
    "NotFound",
    "RunNotFound",
    "SchemaVersionError",
    "StaleLease",
    "StorageError",
    "ValidationError",
    "WaitTimeout",
    "WorkflowNotFound",
    "__version__",
]

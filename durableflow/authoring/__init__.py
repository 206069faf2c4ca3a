"""Workflows written in Python: a typed builder and decorators that compile to the same
definition a YAML file holds (see README, "Workflows in Python").

    wf = Workflow("etl")
    fetch = wf.shell("fetch", ["python3", "fetch.py"], output_format="json")
    process = wf.python("process", transform, retry=Retry.exponential(5))
    fetch >> process
    fetch.on_fail >> wf.python("alert", alert)
"""

from durableflow.authoring.decorators import NodeFunction, node, workflow
from durableflow.authoring.graph import Body, BodySpec, Edge, Graph
from durableflow.authoring.policies import (
    CircuitBreaker, Defaults, Duration, NodeOptions, PythonOptions, RateLimit, Resources, Retry,
    WorkflowSettings)
from durableflow.authoring.refs import IfElseRef, Inlet, NodeRef, Outlet, SwitchRef
from durableflow.authoring.workflow import Workflow

__all__ = [
    "Body", "BodySpec", "CircuitBreaker", "Defaults", "Duration", "Edge", "Graph", "IfElseRef",
    "Inlet", "NodeFunction", "NodeOptions", "NodeRef", "Outlet", "PythonOptions", "RateLimit",
    "Resources", "Retry", "SwitchRef", "Workflow", "WorkflowSettings", "node", "workflow",
]

"""Commands about definitions: validate, register, graph, workflows. `validate` and
`graph FILE` never open (or create) the database."""

from __future__ import annotations

import os
from pathlib import Path

import click

from durableflow.cli.app import EXIT_USAGE, State
from durableflow.cli.formatting import print_json, show, table, when
from durableflow.errors import DefinitionError, RunNotFound, ValidationError, WorkflowNotFound

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")


def looks_like_file(text: str) -> bool:
    return text.lower().endswith(DEFINITION_SUFFIXES) or os.sep in text or Path(text).is_file()


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {file, valid, errors} to stdout.")
def validate(files: tuple[str, ...], as_json: bool) -> None:
    """Check workflow definition files; exit 2 if any is invalid.

    Each problem is one line on stderr naming the file, the node or connection and the field.
    """
    from durableflow.definitions import load_definition
    from durableflow.definitions.notices import notices
    report = []
    for name in files:
        warnings: list[str] = []
        try:
            warnings = notices(load_definition(name), name)
            errors: list[str] = []
        except ValidationError as exc:
            errors = exc.errors or [exc.message]
        except DefinitionError as exc:
            errors = [exc.message]
        report.append({"file": name, "valid": not errors, "errors": errors, "warnings": warnings})
    if as_json:
        print_json(report)
    else:
        for item in report:
            if item["valid"]:
                click.echo(f"{item['file']}: ok")
            for problem in item["errors"]:
                click.echo(problem, err=True)
            for warning in item["warnings"]:
                click.echo(f"warning: {warning}", err=True)
    if any(not item["valid"] for item in report):
        click.get_current_context().exit(EXIT_USAGE)


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {file, workflow_id, version} to stdout.")
@click.pass_obj
def register(state: State, files: tuple[str, ...], as_json: bool) -> None:
    """Store workflow definitions, each as a new version when its content changed.

    Every file is checked first: if any is invalid, none is stored (exit 2). A Subflow's or a
    loop body's workflow must be registered before a run can start it.
    """
    engine = state.engine()
    defns, failed = [], False
    for name in files:
        try:
            defns.append((name, engine.load(name)))
        except ValidationError as exc:
            failed = True
            for problem in exc.errors or [exc.message]:
                click.echo(problem, err=True)
        except DefinitionError as exc:
            failed = True
            click.echo(exc.message, err=True)
    if failed:
        click.echo("nothing was registered", err=True)
        click.get_current_context().exit(EXIT_USAGE)
    report = []
    for name, defn in defns:
        workflow_id, version = engine.register(defn)
        report.append({"file": name, "workflow_id": workflow_id, "version": version})
    if as_json:
        print_json(report)
        return
    for item in report:
        click.echo(f"{item['file']}: workflow {item['workflow_id']!r} version {item['version']}")


@click.command()
@click.argument("target", metavar="FILE|RUN")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True, help="Mermaid flowchart or Graphviz dot.")
@click.pass_obj
def graph(state: State, target: str, fmt: str) -> None:
    """Print the graph of a definition file or of a run.

    ForEach/While bodies and the workflows of Subflow nodes are drawn inside clusters, nested.
    A Subflow's workflow (or a body given by workflowId) is read from the database when it is
    stored there; otherwise the node is one box. `graph FILE` reads an existing database for
    that and never creates one.

    A run's graph is coloured by the latest status of each node; a body node by its status in
    the child runs, the one that matters most across a loop's iterations (failed, then
    running, waiting, pending, cancelled, completed, skipped).

    A stored workflow id works too (the latest version, uncoloured).
    """
    from durableflow.definitions import load_definition, to_dot, to_mermaid
    from durableflow.definitions.nesting import nest, stored_references
    render = to_dot if fmt == "dot" else to_mermaid
    if looks_like_file(target):
        defn = load_definition(target, check_files=False, check_programs=False)
        if stored_references(defn) and state.exists():
            drawing = state.engine(create=False).graph(defn)
        else:
            drawing = nest(defn)
        click.echo(render(drawing), nl=False)
        return
    try:
        drawing = state.engine(create=False).graph(target)
    except WorkflowNotFound:
        raise RunNotFound(f"run {target} not found (nor a workflow or file of that name)") from None
    click.echo(render(drawing), nl=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON to stdout instead of a table.")
@click.pass_obj
def workflows(state: State, as_json: bool) -> None:
    """List registered workflows, each version with its number of runs."""
    rows = state.engine(create=False).workflows()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no workflows registered")
        return
    show(table(["workflow", "version", "runs", "registered", "source"],
               ([r["workflow_id"], r["version"], r["runs"], when(r["created_at"]),
                 r.get("source_path") or ""] for r in rows), no_wrap=("workflow",)))


COMMANDS = (validate, register, graph, workflows)

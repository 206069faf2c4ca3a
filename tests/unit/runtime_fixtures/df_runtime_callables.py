"""Callables for the Python runtime tests, imported as `df_runtime_callables:<name>`."""

from durableflow.errors import NodeError


def double(ctx):
    ctx.vars["doubled"] = True
    return {"value": ctx.input["value"] * 2, "node": ctx.node_id}


class Tools:
    @staticmethod
    def echo(ctx):
        return ctx.input


def custom_error(ctx):
    raise NodeError("quota exceeded", error_type="QuotaExceeded", exit_code=9)


def report(ctx):
    ctx.progress(150, "over the top")
    ctx.log.warning("hello from %s", ctx.node_id)
    print("printed by the body")
    return {"pid_is_int": True}

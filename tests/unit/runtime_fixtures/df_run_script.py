"""A scriptPath body: defines run(ctx). CALLS counts runs per load of this module."""

CALLS = 0


def run(ctx):
    global CALLS
    CALLS += 1
    return {"calls": CALLS, "input": ctx.input, "attempt": ctx.attempt}

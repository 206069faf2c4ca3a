"""Process: read the fetched CSV, keep orders at or above the run's `minAmount`, total by customer."""

import csv


def run(ctx):
    fetched = ctx.input
    minimum = float(ctx.vars.get("minAmount", 0))
    totals: dict[str, float] = {}
    kept = 0
    with open(fetched["path"], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            amount = float(row["amount"])
            if amount < minimum:
                continue
            kept += 1
            totals[row["customer"]] = round(totals.get(row["customer"], 0.0) + amount, 2)
        ctx.progress(100, f"{kept} orders kept")
    ctx.vars["processedRows"] = kept
    return {"path": fetched["path"], "day": fetched["day"], "rows": kept, "totals": totals}

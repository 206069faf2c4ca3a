"""Save: write the report as JSON beside the raw file and return where it went."""

import json
from pathlib import Path


def run(ctx):
    processed = ctx.input
    report = Path(processed["path"]).with_name(f"report-{processed['day']}.json")
    report.write_text(json.dumps({"day": processed["day"], "rows": processed["rows"],
                                  "totals": processed["totals"]}, indent=2, sort_keys=True))
    return {"report": str(report), "customers": len(processed["totals"])}

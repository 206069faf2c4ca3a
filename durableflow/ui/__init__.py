"""The web dashboard (`durableflow ui`): server-rendered pages, a little JavaScript, no build step.

    dash = Dashboard("app.db", read_only=False, token=None)
    server = DashboardServer(dash, "127.0.0.1", 8080)
    server.serve()          # until server.shutdown(); then server.close()

server.py      HTTP: routes, the checks every request passes, the thread pool
dashboard.py   the database (read-only for pages, a writer for the controls), shared by requests
security.py    Host header, access token, CSRF tokens
views_runs.py  the runs list and a run's page; views_other.py the other pages
controls.py    pause, resume, cancel, rerun, signal
live.py        a run's events as server-sent events
graph.py       a workflow's graph as SVG; html.py escaping and the page shell
static/        app.js, app.css
"""

from durableflow.ui.dashboard import Dashboard
from durableflow.ui.security import is_loopback
from durableflow.ui.server import DashboardServer

__all__ = ["Dashboard", "DashboardServer", "is_loopback"]

"""`ganforge studio`: a web page for every task, on the Python API (`ganforge.api`).

`app.py` lays the page out, `handlers.py` says what each button does (through the API only), and
`uploads.py` says what the page accepts from a browser. Gradio is an optional extra
(`pip install ganforge[studio]`), imported only when the studio starts.
"""

import importlib.util
import os
from pathlib import Path

from ganforge.errors import UserError


def launch(host: str = "127.0.0.1", port: int = 7860, runs: str | Path = "runs", device: str | None = None) -> None:
    """Serve the studio at http://HOST:PORT until interrupted; it offers the shipped models and those of `runs`."""
    if importlib.util.find_spec("gradio") is None:
        raise UserError("studio: the Python package 'gradio' is not installed; install the extra with "
                        "`pip install ganforge[studio]`")
    if not 1 <= port <= 65535:
        raise UserError(f"--port: must be between 1 and 65535, got {port}")
    if Path(runs).exists() and not Path(runs).is_dir():
        raise UserError(f"--runs: {runs} is a file; name a folder of runs (it is created when a run starts)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    from ganforge.studio.app import serve

    serve(host, port, Path(runs), device)

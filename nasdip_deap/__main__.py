"""``python -m nasdip_deap``. The import is absolute and the call guarded so that SCOOP, which has no
``-m`` option, can run this file by path: ``python -m scoop -n 2 nasdip_deap/__main__.py search ...``
(SCOOP's workers import it as a module and must not start a search of their own)."""
import os
import sys

from nasdip_deap.cli import main

if __name__ == "__main__":
    code = main()
    if code in (130, 143) and "scoop" in sys.modules and getattr(sys.modules["scoop"], "IS_RUNNING", False):
        # an interrupted SCOOP origin: its launcher is gone, and SCOOP's threads would keep it alive
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:  # no SystemExit(0): SCOOP prints any exception of its root task as a traceback
        raise SystemExit(code)

"""``python -m nasdip_deap``. The import is absolute and the call guarded so that SCOOP, which has no
``-m`` option, can run this file by path: ``python -m scoop -n 2 nasdip_deap/__main__.py search ...``
(SCOOP's workers import it as a module and must not start a search of their own)."""
from nasdip_deap.cli import main

if __name__ == "__main__":
    code = main()
    if code:  # no SystemExit(0): SCOOP prints any exception of its root task as a traceback
        raise SystemExit(code)

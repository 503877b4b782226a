"""``python -m bench [NAME ...]``: run every benchmark (a ``bench/*.py`` with ``main()``), or those named."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def _benchmarks() -> list[str]:
    folder = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    """Run the benchmarks named in ``argv`` (default: all); returns the exit status."""
    names = argv or _benchmarks()
    unknown = sorted(set(names) - set(_benchmarks()))
    if unknown:
        print(f"bench: no benchmark named {', '.join(unknown)} (have: {', '.join(_benchmarks())})")
        return 2
    if not names:
        print("bench: no benchmarks")
        return 1
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        print(f"== bench {name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        module.main()
        print(f"== bench {name} took {time.perf_counter() - started:.1f} s\n", flush=True)
    return 0


raise SystemExit(main(sys.argv[1:]))

"""Fixed cost of a workflow job: wall time of a fresh interpreter importing a module.

Each measurement is ``python -c "<import statement>"`` in a new process (the same interpreter
as this script), repeated ``--repeats`` times per statement, interleaved so machine noise spreads
evenly; reports median, min and max seconds. ``pass`` is the interpreter start-up alone.

``import transformers`` and ``import trl`` are LAZY modules (they load almost nothing until a
name is used), so the table also times the names a job really uses: the eval job's real import
set (sftrl.evaluate + sftrl.modeling + transformers' Auto classes) and TRL's trainers. It also
checks that importing ``sftrl.evaluate`` does not import trl, datasets, peft or accelerate.

    .venv/bin/python benchmarks/bench_jobcost.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
AUTO = "from transformers import AutoModelForCausalLM, AutoTokenizer"
STATEMENTS = {
    "pass": "pass",
    "import torch": "import torch",
    "import transformers (lazy)": "import transformers",
    AUTO: AUTO,
    "import sftrl.evaluate": "import sftrl.evaluate",
    "eval job imports (sftrl.evaluate + modeling + transformers Auto*)": (
        f"import sftrl.evaluate, sftrl.modeling; {AUTO}"
    ),
    "import trl (lazy)": "import trl",
    "from trl import GRPOTrainer, SFTTrainer": "from trl import GRPOTrainer, SFTTrainer",
}


def import_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def heavy_imports_of(module: str) -> list[str]:
    code = (
        f"import sys, {module}; "
        "print(','.join(m for m in ('trl', 'datasets', 'peft', 'accelerate') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="LABEL", help=f"a subset of: {list(STATEMENTS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_jobcost.json")
    args = parser.parse_args()

    labels = args.only or list(STATEMENTS)
    for label in labels:  # warm the OS file cache once, not counted
        import_seconds(STATEMENTS[label])
    times: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(args.repeats):
        for label in labels:
            times[label].append(import_seconds(STATEMENTS[label]))

    report = {
        "benchmark": "bench_jobcost",
        "python": sys.executable,
        "python_version": platform.python_version(),
        "repeats": args.repeats,
        "statements": {label: STATEMENTS[label] for label in labels},
        "seconds": {
            label: {"median": statistics.median(t), "min": min(t), "max": max(t), "all": t}
            for label, t in times.items()
        },
        "sftrl.evaluate imports (of trl, datasets, peft, accelerate)": heavy_imports_of(
            "sftrl.evaluate"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""`make bench`: every benchmark once, at sizes that suit a 2-core machine; JSON under
benchmarks/results/. Benchmarks measure speed and memory; tests never do."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    ["bench_jobcost.py", "--repeats", "3"],
    ["bench_eval.py", "--prompts", "128", "--baseline-prompts", "24"],
    ["bench_sft.py", "--hands", "512"],
    ["bench_rl.py", "--steps", "3"],
    ["bench_spectrum.py", "--layers", "2"],
]


def main() -> int:
    failed = []
    for argv in BENCHMARKS:
        print(f"== {' '.join(argv)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]]).returncode:
            failed.append(argv[0])
    if Path("results").is_dir():  # time per stage of the last `make run`, if there was one
        subprocess.run([sys.executable, str(HERE / "stage_times.py")])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the time of a completed run goes: seconds per stage, from the artifacts' manifests.

    python benchmarks/stage_times.py [--root results] [--out benchmarks/results/stages.json]

Each manifest records when its job started and finished; per stage this sums the job
seconds and takes the wall-clock span from the first start to the last finish.
"""

import argparse
import json
import os
import platform
from datetime import datetime
from pathlib import Path

from sftrl.store import list_artifacts, read_manifest


def stage_times(root: Path) -> dict:
    stages: dict[str, dict] = {}
    first, last = None, None
    for entry in list_artifacts(root):
        if entry["status"] != "complete":
            continue
        manifest = read_manifest(entry["path"])
        start = datetime.fromisoformat(manifest["started"])
        end = datetime.fromisoformat(manifest["finished"])
        first = min(first or start, start)
        last = max(last or end, end)
        s = stages.setdefault(entry["stage"], {"jobs": 0, "job_seconds": 0.0})
        s["jobs"] += 1
        s["job_seconds"] = round(s["job_seconds"] + manifest["seconds"], 2)
        s["first_start"] = min(s.get("first_start", manifest["started"]), manifest["started"])
        s["last_finish"] = max(s.get("last_finish", manifest["finished"]), manifest["finished"])
    return {
        "root": str(root),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "wall_seconds_first_to_last_artifact": (last - first).total_seconds() if first else 0,
        "stages": stages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stages.json"))
    args = parser.parse_args()
    report = stage_times(args.root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

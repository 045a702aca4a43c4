"""Tests for the sftrl command line (sftrl.cli.main and the installed console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sftrl import store
from sftrl.cli import COMMANDS, main


def write_artifact(
    root: Path, stage: str, params: dict[str, Any], parents: dict[str, str] | None = None
) -> Path:
    parents = parents or {}
    spec = {
        "stage": stage,
        "id": store.artifact_id(stage, params, parents),
        "params": params,
        "parents": parents,
        "inputs": {},
        "root": str(root),
    }
    with store.open_artifact(spec) as art:
        (art.path / "model").mkdir()
        (art.path / "model" / "weights.bin").write_bytes(b"\x00\x01" * 500)
        (art.path / "metrics.jsonl").write_text('{"step": 1}\n')
        art.summary["reward"] = 0.5
    return store.artifact_dir(root, stage, spec["id"])


@pytest.fixture
def results(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "results"
    data = write_artifact(root, "data", {"n_train": 100, "seed": 0})
    parents = {"data": data.name, "base": "hf:Qwen/Qwen2.5-7B"}
    sft = write_artifact(root, "sft", {"lr": 1e-4, "epochs": 2, "seed": 0}, parents)
    (root / "sft" / f".tmp-{'f' * 16}-999999-abcd").mkdir()  # an interrupted job
    return {"root": root, "data": data, "sft": sft}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_table(results: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ls", "--root", str(results["root"]))
    assert code == 0
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == ["STAGE", "ID", "PARAMS", "PARENTS", "STATUS"]
    rows = lines[1:-1]
    assert len(rows) == 3
    for column in ("ID", "PARAMS", "PARENTS", "STATUS"):  # aligned: every cell starts together
        start = header.index(column)
        assert all(row[start - 2 : start] == "  " and row[start] != " " for row in rows)
    sft_row = next(row for row in rows if results["sft"].name in row)
    assert "epochs=2 lr=0.0001 seed=0" in sft_row
    assert f"base=hf:Qwen/Qwen2.5-7B,data={results['data'].name[:8]} " in sft_row
    assert "complete" in sft_row
    tmp_row = next(row for row in rows if "f" * 16 in row)
    assert "INCOMPLETE" in tmp_row and "temp dir" in tmp_row
    assert lines[-1] == "3 artifacts, 1 incomplete"


def test_ls_stage_filter_and_empty(tmp_path: Path, results: dict[str, Path], capsys) -> None:
    code, out, _ = run(capsys, "ls", "--root", str(results["root"]), "--stage", "data")
    assert code == 0 and results["data"].name in out and results["sft"].name not in out
    code, out, _ = run(capsys, "ls", "--root", str(tmp_path / "nothing"))
    assert code == 0 and "no artifacts" in out


def test_show_by_prefix(results: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(results["root"])
    sid = results["sft"].name
    code, out, _ = run(capsys, "show", sid[:6], "--root", root)
    assert code == 0
    assert f"id          {sid}" in out and "params:" in out and "model/weights.bin" in out
    assert '"lr": 0.0001' in out and "files: 2," in out
    code, out, _ = run(capsys, "show", f"sft/{sid[:6]}", "--root", root, "--json")
    assert code == 0 and json.loads(out)["id"] == sid


def test_show_errors(results: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(results["root"])
    code, _, err = run(capsys, "show", "zzzz", "--root", root)
    assert code == 1 and "no artifact" in err
    code, _, err = run(capsys, "show", "", "--root", root)  # empty prefix matches everything
    assert code == 1 and "ambiguous" in err
    code, _, err = run(capsys, "show", "ffff", "--root", root)
    assert code == 1 and "incomplete" in err


def test_verify_all_then_detect_corruption(
    results: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(results["root"])
    code, out, _ = run(capsys, "verify", "--root", root)
    assert code == 0 and out.count("OK  ") == 2 and "2 checked, 2 OK, 0 FAILED" in out

    weights = results["sft"] / "model" / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[7] ^= 0xFF
    weights.write_bytes(bytes(data))
    (results["data"] / "metrics.jsonl").unlink()
    code, out, _ = run(capsys, "verify", "--root", root)
    assert code == 1
    assert f"FAILED  sft/{results['sft'].name}" in out and "model/weights.bin: altered" in out
    assert f"FAILED  data/{results['data'].name}" in out and "metrics.jsonl: missing" in out


def test_verify_paths_and_ids(results: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(results["root"])
    code, out, _ = run(
        capsys, "verify", str(results["data"]), results["sft"].name[:5], "--root", root
    )
    assert code == 0 and "2 OK" in out
    code, out, _ = run(capsys, "verify", "nonexistent", "--root", root)
    assert code == 1 and "FAILED  nonexistent" in out
    tmp_dir = next((results["root"] / "sft").glob(".tmp-*"))
    code, out, _ = run(capsys, "verify", str(tmp_dir), "--root", root)
    assert code == 1 and "manifest.json: missing" in out


def test_gc_dry_run_and_yes(results: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(results["root"])
    tmp_dir = next((results["root"] / "sft").glob(".tmp-*"))
    old = os.path.getmtime(tmp_dir) - 10 * 3600
    os.utime(tmp_dir, (old, old))

    code, out, _ = run(capsys, "gc", "--root", root)  # nothing named: only junk goes
    assert code == 0 and "would remove" in out and tmp_dir.name in out and "--yes" in out
    assert tmp_dir.exists()

    code, out, _ = run(capsys, "gc", "--root", root, "--keep", results["data"].name[:6])
    assert code == 0 and results["sft"].name in out and results["data"].name not in out

    code, out, _ = run(capsys, "gc", "--root", root, "--keep", results["sft"].name, "--yes")
    assert code == 0 and "removed" in out
    assert not tmp_dir.exists() and results["sft"].exists() and results["data"].exists()

    code, _, err = run(capsys, "gc", "--root", root, "--keep", "zzzz")
    assert code == 1 and "no artifact" in err


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert main(["frobnicate"]) == 2
    assert {c.name for c in COMMANDS} >= {"ls", "show", "verify", "gc"}


def test_cli_import_is_light() -> None:
    heavy = "('torch', 'transformers', 'numpy')"
    code = f"import sys, sftrl.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_console_script(results: dict[str, Path]) -> None:
    script = Path(sys.executable).parent / "sftrl"
    assert script.exists(), "the sftrl console script is not installed in this environment"
    root = str(results["root"])
    ls = subprocess.run([script, "ls", "--root", root], capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0 and "INCOMPLETE" in ls.stdout and results["sft"].name in ls.stdout
    (results["sft"] / "extra.txt").write_text("not in the manifest")
    check = subprocess.run(
        [script, "verify", "--root", root], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 1 and "extra.txt: extra" in check.stdout

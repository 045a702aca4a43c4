"""Tests for sftrl.store: ids, fingerprint, atomic writer, manifest, verify, listing, gc."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftrl import store

FP = {"code": "0" * 64, "packages": {"torch": "2.13.0", "numpy": None}, "python": "3.11"}


def make_spec(root: Path, stage: str = "sft", **params: Any) -> dict[str, Any]:
    params = params or {"lr": 1e-4, "epochs": 3, "seed": 7}
    parents = {"data": "a" * 16}
    return {
        "stage": stage,
        "id": store.artifact_id(stage, params, parents),
        "params": params,
        "parents": parents,
        "inputs": {"data": str(root / "data" / ("a" * 16))},
        "root": str(root),
    }


def write_artifact(root: Path, files: dict[str, bytes], stage: str = "sft", **params: Any) -> Path:
    spec = make_spec(root, stage, **params)
    with store.open_artifact(spec) as art:
        for rel, data in files.items():
            (art.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (art.path / rel).write_bytes(data)
        art.summary["loss"] = 0.25
    return store.artifact_dir(root, stage, spec["id"])


def temp_dirs(root: Path) -> list[Path]:
    return [p for p in root.glob("*/.tmp-*")]


# --------------------------------------------------------------------------- canonical JSON


def test_canonical_json_is_sorted_compact_utf8() -> None:
    text = store.canonical_json({"b": 1, "a": {"z": (1, 2.5), "y": "é"}, "c": [0.1, 1e-7]})
    assert text == '{"a":{"y":"é","z":[1,2.5]},"b":1,"c":[0.1,1e-07]}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match=r"non-finite.*\$\.opt\.lr"):
        store.canonical_json({"opt": {"lr": bad}})


def test_canonical_json_rejects_odd_keys_and_types() -> None:
    with pytest.raises(TypeError, match="key"):
        store.canonical_json({1: "x"})
    with pytest.raises(TypeError, match="set"):
        store.canonical_json({"a": {1, 2}})


# --------------------------------------------------------------------------- ids


def test_artifact_id_shape_and_key_order() -> None:
    a = store.artifact_id("sft", {"lr": 0.1, "opt": {"b": 1, "a": 2}}, {"x": "1", "y": "2"}, FP)
    b = store.artifact_id("sft", {"opt": {"a": 2, "b": 1}, "lr": 0.1}, {"y": "2", "x": "1"}, FP)
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0
    assert store.artifact_id("sft", {"sizes": (1, 2)}, {}, FP) == store.artifact_id(
        "sft", {"sizes": [1, 2]}, {}, FP
    )


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=5),
        st.integers() | st.floats(allow_nan=False, allow_infinity=False),
        max_size=6,
    )
)
def test_artifact_id_ignores_insertion_order(params: dict[str, Any]) -> None:
    reversed_params = dict(reversed(list(params.items())))
    assert store.artifact_id("s", params, {}, FP) == store.artifact_id("s", reversed_params, {}, FP)


def test_artifact_id_changes_with_every_input() -> None:
    base = store.artifact_id("sft", {"lr": 0.1}, {"data": "1"}, FP)
    assert store.artifact_id("sft", {"lr": 0.2}, {"data": "1"}, FP) != base
    assert store.artifact_id("sft", {"lr": 0.1, "x": None}, {"data": "1"}, FP) != base
    assert store.artifact_id("sft", {"lr": 0.1}, {"data": "2"}, FP) != base
    assert store.artifact_id("rl", {"lr": 0.1}, {"data": "1"}, FP) != base
    assert store.artifact_id("sft", {"lr": 0.1}, {"data": "1"}, {**FP, "python": "3.12"}) != base


def test_artifact_id_rejects_nan() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        store.artifact_id("sft", {"lr": float("nan")}, {}, FP)


def test_artifact_id_identical_in_another_process() -> None:
    params = {"lr": 0.1, "betas": (0.9, 0.999), "name": "Qwen2.5-7B", "n": 3}
    code = textwrap.dedent(
        f"""
        import json
        from sftrl import store
        params = {{"n": 3, "name": "Qwen2.5-7B", "betas": [0.9, 0.999], "lr": 0.1}}
        print(json.dumps([store.artifact_id("sft", params, {{"d": "x"}}, {FP!r}),
                          store.artifact_id("sft", params, {{"d": "x"}})]))
        """
    )
    before = store.artifact_id("sft", params, {"d": "x"})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    explicit, default = json.loads(out.stdout)
    assert explicit == store.artifact_id("sft", params, {"d": "x"}, FP)
    # Other engineers may edit sftrl sources meanwhile: accept the fingerprint before or after.
    store._FINGERPRINT_CACHE = None
    after = store.artifact_id("sft", params, {"d": "x"})
    assert default in {before, after}


# --------------------------------------------------------------------------- fingerprint


def test_code_hash_ignores_presentation_modules(tmp_path: Path) -> None:
    pkg = tmp_path / "sftrl"
    (pkg / "train").mkdir(parents=True)
    (pkg / "report").mkdir()
    (pkg / "figures").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "sft.py").write_text("x = 1\n")
    (pkg / "figures" / "angles.py").write_text("fig = 1\n")
    (pkg / "cli.py").write_text("cli = 1\n")
    (pkg / "report" / "page.py").write_text("page = 1\n")
    (pkg / "notes.txt").write_text("not python")
    base = store.code_hash(pkg)
    (pkg / "figures" / "angles.py").write_text("fig = 2\n")
    (pkg / "figures" / "coupling.py").write_text("new figure\n")
    (pkg / "cli.py").write_text("cli = 2\n")
    (pkg / "report" / "page.py").write_text("page = 2\n")
    (pkg / "report_extra.py").write_text("r = 1\n")
    (pkg / "notes.txt").write_text("changed")
    assert store.code_hash(pkg) == base
    (pkg / "train" / "sft.py").write_text("x = 2\n")
    assert store.code_hash(pkg) != base
    (pkg / "train" / "sft.py").write_text("x = 1\n")
    (pkg / "train" / "figures.py").write_text("nested modules named figures are code\n")
    assert store.code_hash(pkg) != base


def test_code_fingerprint_fields_and_cache() -> None:
    fp = store.code_fingerprint()
    assert set(fp) == {"code", "packages", "python"}
    assert len(fp["code"]) == 64
    assert set(fp["packages"]) == set(store.FINGERPRINT_PACKAGES)
    assert fp["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    fp["packages"]["torch"] = "mutated"
    assert store.code_fingerprint()["packages"]["torch"] != "mutated"


# --------------------------------------------------------------------------- open_artifact


def test_open_artifact_writes_manifest_with_hashes(tmp_path: Path) -> None:
    files = {"a.txt": b"hello", "model/weights.bin": os.urandom(3 * 1024 * 1024 + 5)}
    final = write_artifact(tmp_path, files)
    manifest = json.loads((final / "manifest.json").read_text())
    assert manifest["files"] == {
        rel: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for rel, data in files.items()
    }
    assert manifest["stage"] == "sft" and manifest["id"] == final.name
    assert manifest["params"] == {"lr": 1e-4, "epochs": 3, "seed": 7}
    assert manifest["seed"] == 7 and manifest["parents"] == {"data": "a" * 16}
    assert manifest["fingerprint"] == store.code_fingerprint()
    assert manifest["summary"] == {"loss": 0.25}
    for key in ("host", "created", "started", "finished", "seconds", "inputs"):
        assert key in manifest
    assert manifest["created"].endswith("+00:00")
    assert store.read_manifest(final) == store.read_manifest(final / "manifest.json") == manifest
    assert store.verify(final) == []
    assert temp_dirs(tmp_path) == []


def test_open_artifact_renames_onto_empty_precreated_dir(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    final = store.artifact_dir(tmp_path, "sft", spec["id"])
    final.mkdir(parents=True)  # what Snakemake does for directory() outputs
    with store.open_artifact(spec) as art:
        assert art.path != final and art.path.name.startswith(f".tmp-{spec['id']}-{os.getpid()}-")
        (art.path / "x").write_text("x")
    assert sorted(p.name for p in final.iterdir()) == ["manifest.json", "x"]
    assert store.verify(final) == []


def test_exception_inside_block_leaves_nothing(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with store.open_artifact(spec) as art:
            (art.path / "partial").write_text("x")
            raise RuntimeError("boom")
    assert not store.artifact_dir(tmp_path, "sft", spec["id"]).exists()
    assert temp_dirs(tmp_path) == []


def test_id_mismatch_names_both_ids(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    good, bad = spec["id"], "0123456789abcdef"
    with pytest.raises(ValueError) as info:
        with store.open_artifact({**spec, "id": bad}):
            pass
    assert good in str(info.value) and bad in str(info.value)
    assert not (tmp_path / "sft").exists()


def test_nan_in_params_rejected(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    spec["params"] = {**spec["params"], "lr": float("nan")}
    with pytest.raises(ValueError, match="non-finite"):
        with store.open_artifact(spec):
            pass


def test_summary_nan_and_scalar_objects_are_stored(tmp_path: Path) -> None:
    class Scalar:
        def item(self) -> float:
            return 1.5

    spec = make_spec(tmp_path)
    with store.open_artifact(spec) as art:
        art.summary.update(loss=float("nan"), acc=Scalar(), path=tmp_path)
    manifest = store.read_manifest(store.artifact_dir(tmp_path, "sft", spec["id"]))
    assert manifest["summary"] == {"loss": "NaN", "acc": 1.5, "path": str(tmp_path)}


def test_stage_may_not_write_manifest(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        with store.open_artifact(spec) as art:
            (art.path / "manifest.json").write_text("{}")
    assert (
        temp_dirs(tmp_path) == [] and not store.artifact_dir(tmp_path, "sft", spec["id"]).exists()
    )


def test_concurrent_run_keeps_existing_verified_artifact(tmp_path: Path) -> None:
    first = write_artifact(tmp_path, {"a": b"first"})
    before = (first / "manifest.json").read_bytes()
    second = write_artifact(tmp_path, {"a": b"second"})
    assert second == first
    assert (first / "manifest.json").read_bytes() == before
    assert (first / "a").read_bytes() == b"first"
    assert temp_dirs(tmp_path) == []


def test_broken_existing_dir_is_replaced(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    final = store.artifact_dir(tmp_path, "sft", spec["id"])
    final.mkdir(parents=True)
    (final / "leftover").write_text("half-written by something else")
    with store.open_artifact(spec) as art:
        (art.path / "a").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["a", "manifest.json"]
    assert store.verify(final) == [] and temp_dirs(tmp_path) == []


def test_sigkill_before_rename_leaves_nothing_complete(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import time
        from sftrl import store
        params, parents = {{"lr": 0.1, "seed": 1}}, {{}}
        sid = store.artifact_id("sft", params, parents)
        store.artifact_dir({str(tmp_path)!r}, "sft", sid).mkdir(parents=True)  # like Snakemake
        spec = dict(stage="sft", id=sid, params=params, parents=parents, inputs={{}},
                    root={str(tmp_path)!r})
        with store.open_artifact(spec) as art:
            (art.path / "weights.bin").write_bytes(b"x" * 1000)
            print(sid, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        sid = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(sid) == 16
    entries = store.list_artifacts(tmp_path)
    assert entries and all(e["status"] == "incomplete" for e in entries)
    assert {e["id"] for e in entries} == {sid}
    assert {e["kind"] for e in entries} == {"temp", "artifact"}
    assert store.verify(store.artifact_dir(tmp_path, "sft", sid)) != []


# --------------------------------------------------------------------------- verify


def test_verify_names_flipped_byte(tmp_path: Path) -> None:
    final = write_artifact(tmp_path, {"model/w.bin": bytes(range(256)) * 10, "log.jsonl": b"{}"})
    data = bytearray((final / "model/w.bin").read_bytes())
    data[100] ^= 0x01
    (final / "model/w.bin").write_bytes(bytes(data))
    problems = store.verify(final)
    assert len(problems) == 1 and "model/w.bin" in problems[0] and "altered" in problems[0]


def test_verify_missing_and_extra_files(tmp_path: Path) -> None:
    final = write_artifact(tmp_path, {"a.txt": b"a", "b.txt": b"b"})
    (final / "a.txt").unlink()
    (final / "sub").mkdir()
    (final / "sub" / "new.txt").write_text("extra")
    (final / ".snakemake_timestamp").write_text("")  # Snakemake's own flag: not a problem
    problems = store.verify(final)
    assert len(problems) == 2
    assert any("a.txt" in p and "missing" in p for p in problems)
    assert any("sub/new.txt" in p and "extra" in p for p in problems)


def test_verify_size_change_and_manifest_problems(tmp_path: Path) -> None:
    final = write_artifact(tmp_path, {"a.txt": b"abc"})
    (final / "a.txt").write_bytes(b"abcd")
    assert any("a.txt" in p and "size" in p for p in store.verify(final))

    manifest = json.loads((final / "manifest.json").read_text())
    manifest["params"]["lr"] = 0.5
    (final / "manifest.json").write_text(json.dumps(manifest))
    assert any("manifest.json" in p and "edited" in p for p in store.verify(final))

    (final / "manifest.json").write_text("{not json")
    problems = store.verify(final)
    assert len(problems) == 1 and "manifest.json" in problems[0] and "corrupt" in problems[0]
    with pytest.raises(ValueError, match="corrupt"):
        store.read_manifest(final)
    (final / "manifest.json").unlink()
    assert "missing" in store.verify(final)[0]


def test_verify_fails_on_truncated_manifest(tmp_path: Path) -> None:
    final = write_artifact(tmp_path, {"a.txt": b"abc"})
    text = (final / "manifest.json").read_text()
    (final / "manifest.json").write_text(text[: len(text) // 2])
    problems = store.verify(final)
    assert len(problems) == 1 and "corrupt" in problems[0]


def test_verify_fails_on_edited_summary_field(tmp_path: Path) -> None:
    """The summary is not part of the id; the manifest's own hash covers it."""
    final = write_artifact(tmp_path, {"a.txt": b"abc"})
    assert store.verify(final) == []
    manifest = json.loads((final / "manifest.json").read_text())
    manifest["summary"]["loss"] = 0.125
    (final / "manifest.json").write_text(json.dumps(manifest, indent=2))
    problems = store.verify(final)
    assert problems == [f"manifest.json: edited (fields do not match its {store.INTEGRITY_KEY})"]
    del manifest[store.INTEGRITY_KEY]
    (final / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert any(store.INTEGRITY_KEY in p for p in store.verify(final))


def test_verify_reports_symlinks_and_empty_directories(tmp_path: Path) -> None:
    final = write_artifact(tmp_path, {"a.txt": b"abc"})
    (final / "empty").mkdir()
    (final / "link.txt").symlink_to(final / "a.txt")
    problems = store.verify(final)
    assert any(p.startswith("empty/: extra empty directory") for p in problems)
    assert any(p.startswith("link.txt: symlink") for p in problems)


def test_verify_store_fails_on_missing_manifest_and_strays(tmp_path: Path) -> None:
    good = write_artifact(tmp_path, {"a.txt": b"abc"})
    broken = write_artifact(tmp_path, {"b.txt": b"b"}, lr=0.5)
    (broken / "manifest.json").unlink()
    (tmp_path / "sft" / "notes").mkdir()
    (tmp_path / "sft" / "stray.txt").write_text("x")
    (tmp_path / "sft" / ("c" * 16)).symlink_to(good)
    (tmp_path / "sft" / f"{store.TEMP_PREFIX}{'d' * 16}-1-ab").mkdir()  # a job's: left to gc
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "recovery.pdf").write_bytes(b"%PDF")  # workflow output
    report = dict(store.verify_store(tmp_path))
    assert report.pop(f"sft/{good.name}") == []
    assert "missing" in report.pop(f"sft/{broken.name}")[0]
    assert "extra directory" in report.pop("sft/notes")[0]
    assert "extra file" in report.pop("sft/stray.txt")[0]
    assert "symlink" in report.pop(f"sft/{'c' * 16}")[0]
    assert report == {}

    from sftrl.cli import main

    assert main(["verify", "--root", str(tmp_path)]) == 1


# --------------------------------------------------------------------------- listing, gc


def test_list_artifacts_fields(tmp_path: Path) -> None:
    final = write_artifact(tmp_path, {"a": b"a"}, lr=0.1, seed=3, model={"layers": 2})
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "recovery.pdf").write_bytes(b"%PDF")
    (tmp_path / "sft" / "feedbeefcafe0000").mkdir()
    entries = store.list_artifacts(tmp_path)
    assert sorted(e["status"] for e in entries) == ["complete", "incomplete"]
    complete = next(e for e in entries if e["status"] == "complete")
    assert complete["id"] == final.name and complete["stage"] == "sft"
    assert complete["key_params"] == "lr=0.1 seed=3"
    assert complete["parents"] == {"data": "a" * 16} and complete["created"]
    empty = next(e for e in entries if e["status"] == "incomplete")
    assert empty["id"] == "feedbeefcafe0000" and "no manifest" in empty["note"]
    assert store.list_artifacts(tmp_path / "missing") == []


def test_gc_keeps_ancestors_and_removes_the_rest(tmp_path: Path) -> None:
    parent = write_artifact(tmp_path, {"d": b"d"}, stage="data", n=1)
    child_spec = make_spec(tmp_path, "sft", lr=0.1)
    child_spec["parents"] = {"data": parent.name}
    child_spec["id"] = store.artifact_id("sft", child_spec["params"], child_spec["parents"])
    with store.open_artifact(child_spec) as art:
        (art.path / "m").write_text("m")
    child = store.artifact_dir(tmp_path, "sft", child_spec["id"])
    old = write_artifact(tmp_path, {"o": b"o"}, stage="sft", lr=0.2)

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / "sft" / f".tmp-{old.name}-{dead.stdout.strip()}-abcd"
    live = tmp_path / "sft" / f".tmp-{old.name}-{os.getpid()}-abcd"
    stale.mkdir()
    live.mkdir()

    planned = store.gc(tmp_path, [child.name], dry_run=True, stale_after=0)
    assert {Path(e["path"]) for e in planned} == {old, stale}
    assert old.exists() and stale.exists()
    fresh = store.gc(tmp_path, [child.name], dry_run=True)  # default age guard: temp dir kept
    assert {Path(e["path"]) for e in fresh} == {old}
    store.gc(tmp_path, [child.name], dry_run=False, stale_after=0)
    assert parent.exists() and child.exists() and live.exists()
    assert not old.exists() and not stale.exists()

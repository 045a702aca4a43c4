"""sftrl.surgery: UV merge, layer reset, interpolation (docs/science.md section 7)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sftrl import surgery
from sftrl.surgery import method_kwargs
from sftrl.surgery.interp import interpolate
from sftrl.surgery.reset import layer_reset
from sftrl.surgery.uv import replaced_counts, uv_merge, uv_merge_matrix
from sftrl.weights import Weights, parse_layers, thin_svd

torch.set_num_threads(1)

N_LAYERS = 4


def make_model_pair(
    root: Path, dtype: torch.dtype = torch.float32, kv_heads: int = 4
) -> tuple[Path, Path]:
    """Donor and recipient: a tiny random Llama and a perturbed copy (1-D tensors too)."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        vocab_size=50,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(cfg).to(dtype)
    donor, recipient = root / "donor", root / "recipient"
    model.save_pretrained(donor)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * param.float().std() * torch.randn_like(param) + 0.01)
    model.save_pretrained(recipient)
    (recipient / "tokenizer_config.json").write_text('{"model_max_length": 64}\n')
    return donor, recipient


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_model_pair(tmp_path_factory.mktemp("surgery"))


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    with Weights(model_dir) as w:
        return {name: w.get(name) for name in w.names()}


def bit_identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def assert_loads(model_dir: Path) -> None:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 4, 5]])).logits
    assert logits.shape == (1, 5, 50) and torch.isfinite(logits).all()
    loaded = model.state_dict()
    for name, tensor in weights(model_dir).items():
        assert torch.equal(loaded[name].to(tensor.dtype), tensor), name


# --------------------------------------------------------------------------- pure functions


def test_replaced_counts() -> None:
    assert replaced_counts(32, 0.25, 0) == (8, 0)
    assert replaced_counts(32, 4, 0.125) == (4, 4)
    assert replaced_counts(32, 0.75, 0.5) == (24, 8)  # overlap: the union, i.e. everything
    assert replaced_counts(32, 100, 5) == (32, 0)
    assert replaced_counts(32, 0, 0.0) == (0, 0)


def test_uv_merge_matrix_equals_mixed_basis_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in ((12, 20), (20, 12)):
        w_b = torch.randn(*shape, generator=gen, dtype=torch.float64)
        w_t = torch.randn(*shape, generator=gen, dtype=torch.float64)
        u_b, s_b, v_b = thin_svd(w_b)
        u_t, s_t, v_t = thin_svd(w_t)
        n = min(shape)
        for head, tail, values in ((3, 2, "recipient"), (0, 4, "donor"), (5, 0, "donor")):
            idx = list(range(head)) + list(range(n - tail, n))
            u_new, v_new, s_new = u_t.clone(), v_t.clone(), s_t.clone()
            u_new[:, idx], v_new[:, idx] = u_b[:, idx], v_b[:, idx]
            if values == "donor":
                s_new[idx] = s_b[idx]
            literal = u_new * s_new @ v_new.T  # W' = U' diag(S') V'^T
            merged = uv_merge_matrix(w_b, w_t, head, tail, values=values)
            torch.testing.assert_close(merged, literal)
        # Everything replaced: donor directions with recipient values, donor with donor values.
        full = uv_merge_matrix(w_b, w_t, n, 0)
        torch.testing.assert_close(full, u_b * s_t @ v_b.T)
        torch.testing.assert_close(uv_merge_matrix(w_b, w_t, n, 0, values="donor"), w_b)
        torch.testing.assert_close(uv_merge_matrix(w_b, w_t, 0, 0), w_t)


def test_parse_layers() -> None:
    assert parse_layers("0-3", 8) == [0, 1, 2, 3]
    assert parse_layers("0,2,5-6", 8) == [0, 2, 5, 6]
    assert parse_layers([3, 1, "5"], 8) == [1, 3, 5]
    assert parse_layers(2, 8) == [2]
    assert parse_layers("first_quarter", 28) == list(range(7))
    assert parse_layers("first_quarter", 4) == [0]
    assert parse_layers("last_half", 4) == [2, 3]
    assert parse_layers("first:0.5", 6) == [0, 1, 2]
    assert parse_layers("all", 3) == [0, 1, 2]
    for bad in ("8", "x", "first_dozen", "1-"):
        with pytest.raises(ValueError):
            parse_layers(bad, 8)


def test_method_kwargs() -> None:
    params = {"method": "uv", "top": 0.2, "tail": 0, "donor": {"label": "peak"}}
    assert method_kwargs(params) == ("uv", {"k_top": 0.2, "k_tail": 0})
    assert method_kwargs({"method": "interp", "alpha": 0.5}) == ("interp", {"alpha": 0.5})
    with pytest.raises(ValueError, match="unknown params"):
        method_kwargs({"method": "reset", "layers": "0-1", "alpha": 1})
    with pytest.raises(ValueError, match="method"):
        method_kwargs({"method": "swap"})


# --------------------------------------------------------------------------- UV merge


def test_uv_k_zero_returns_recipient_bit_for_bit(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    summary = uv_merge(*pair, tmp_path / "out", k_top=0, k_tail=0.0)
    out, rec = weights(tmp_path / "out"), weights(pair[1])
    assert out.keys() == rec.keys()
    assert all(bit_identical(out[n], rec[n]) for n in rec)
    assert summary["tensors_modified"] == 0
    assert summary["tensors_bit_identical_to_recipient"] == len(rec)
    # side files: config, generation config and the tokenizer file come from the recipient
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        assert (tmp_path / "out" / name).read_bytes() == (pair[1] / name).read_bytes()
    assert load_file(tmp_path / "out" / "model.safetensors") is not None


def test_uv_full_rank(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    don, rec = weights(pair[0]), weights(pair[1])
    uv_merge(*pair, tmp_path / "donor_values", k_top=1.0, values="donor")
    out = weights(tmp_path / "donor_values")
    for name, tensor in out.items():
        expected = don[name] if tensor.ndim == 2 else rec[name]  # 1-D: recipient's
        assert bit_identical(tensor, expected), name
    # direction-only, k_top + k_tail >= n, full_rank="donor" (the published code): the donor's
    # matrix is copied whole, its singular values included
    summary = uv_merge(*pair, tmp_path / "published", k_top=20, k_tail=0.5)
    out = weights(tmp_path / "published")
    for name, tensor in out.items():
        expected = don[name] if tensor.ndim == 2 else rec[name]
        assert bit_identical(tensor, expected), name
    assert all(m["copied_whole"] for m in summary["matrices"].values())
    # full_rank="recipient_values": donor vectors with the recipient's singular values
    summary = uv_merge(
        *pair, tmp_path / "directions", k_top=20, k_tail=0.5, full_rank="recipient_values"
    )
    out = weights(tmp_path / "directions")
    for name, tensor in out.items():
        if tensor.ndim != 2:
            assert bit_identical(tensor, rec[name]), name
            continue
        u_b, _, v_b = thin_svd(don[name].double())
        s_t = torch.linalg.svdvals(rec[name].double())
        torch.testing.assert_close(tensor.double(), u_b * s_t @ v_b.T, atol=1e-5, rtol=1e-4)
    assert not any(m["copied_whole"] for m in summary["matrices"].values())
    assert_loads(tmp_path / "directions")


def test_uv_absolute_k_clamps_per_matrix(tmp_path: Path) -> None:
    """An absolute k grid above one matrix's rank (k_proj/v_proj under grouped-query attention)
    copies that matrix whole and merges the larger ones, as the published code does."""
    donor, recipient = make_model_pair(tmp_path / "models", kv_heads=1)  # k_proj: 8 x 32
    summary = uv_merge(donor, recipient, tmp_path / "out", k_top=6, k_tail=3)
    don, rec, out = weights(donor), weights(recipient), weights(tmp_path / "out")
    k_proj, q_proj = (
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.q_proj.weight",
    )
    assert summary["matrices"][k_proj] == {"rank": 8, "k_top": 6, "k_tail": 2, "copied_whole": True}
    assert summary["matrices"][q_proj] == {
        "rank": 32,
        "k_top": 6,
        "k_tail": 3,
        "copied_whole": False,
    }
    assert bit_identical(out[k_proj], don[k_proj])
    assert not torch.equal(out[q_proj], don[q_proj]) and not torch.equal(out[q_proj], rec[q_proj])


def test_uv_partial_merge_and_module_filter(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    summary = uv_merge(*pair, tmp_path / "out", k_top=0.25, k_tail=2, modules=["mlp"])
    don, rec, out = weights(pair[0]), weights(pair[1]), weights(tmp_path / "out")
    merged = [n for n in rec if "mlp" in n and rec[n].ndim == 2]
    assert summary["modified"] == merged and len(merged) == 3 * N_LAYERS
    for name in rec:
        if name not in merged:
            assert bit_identical(out[name], rec[name]), name
    name = "model.layers.1.mlp.down_proj.weight"
    assert summary["matrices"][name] == {"rank": 32, "k_top": 8, "k_tail": 2, "copied_whole": False}
    u_o, s_o, v_o = thin_svd(out[name].double())
    u_b, _, v_b = thin_svd(don[name].double())
    # the merged matrix is no SVD in the mixed basis, but it is close to the recipient's
    # spectrum and its top direction leans toward the donor's
    s_t = torch.linalg.svdvals(rec[name].double())
    assert torch.linalg.vector_norm(s_o - s_t) < 0.5 * torch.linalg.vector_norm(s_t)
    assert abs(u_o[:, 0] @ u_b[:, 0]) > 0.5
    assert_loads(tmp_path / "out")


def test_uv_keeps_stored_dtype(tmp_path: Path) -> None:
    donor, recipient = make_model_pair(tmp_path / "models", dtype=torch.bfloat16)
    uv_merge(donor, recipient, tmp_path / "out", k_top=0.5, dtype="float64")
    out, rec = weights(tmp_path / "out"), weights(recipient)
    assert all(out[n].dtype == torch.bfloat16 for n in out)
    assert not torch.equal(out["lm_head.weight"], rec["lm_head.weight"])
    assert_loads(tmp_path / "out")


def test_out_dir_must_be_empty(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        uv_merge(*pair, tmp_path / "out", k_top=1)


# --------------------------------------------------------------------------- layer reset


@pytest.mark.parametrize(
    ("switches", "layers"),
    [({}, "0-1"), ({"embeddings": True, "lm_head": True, "norms": True}, "first_quarter")],
)
def test_layer_reset(
    tmp_path: Path, pair: tuple[Path, Path], switches: dict[str, bool], layers: str
) -> None:
    summary = layer_reset(*pair, tmp_path / "out", layers=layers, **switches)
    don, rec, out = weights(pair[0]), weights(pair[1]), weights(tmp_path / "out")
    chosen = {0, 1} if layers == "0-1" else {0}
    assert summary["layers"] == sorted(chosen)
    selected = []
    for name in rec:
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        if layer is not None:
            take = layer in chosen and (rec[name].ndim == 2 or switches.get("norms", False))
        else:
            take = (switches.get("embeddings", False) and "embed_tokens" in name) or (
                switches.get("lm_head", False) and name == "lm_head.weight"
            )
        expected = don[name] if take else rec[name]
        assert bit_identical(out[name], expected), name
        if take:
            selected.append(name)
    assert summary["modified"] == selected
    assert "model.norm.weight" not in selected  # the final norm belongs to no layer
    assert_loads(tmp_path / "out")


# --------------------------------------------------------------------------- interpolation


def test_interpolation(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    don, rec = weights(pair[0]), weights(pair[1])
    interpolate(*pair, tmp_path / "a0", alpha=0)
    interpolate(*pair, tmp_path / "a1", alpha=1.0)
    interpolate(*pair, tmp_path / "half", alpha=0.5)
    a0, a1, half = weights(tmp_path / "a0"), weights(tmp_path / "a1"), weights(tmp_path / "half")
    for name in rec:
        assert bit_identical(a0[name], rec[name]), name
        assert bit_identical(a1[name], don[name]), name
        torch.testing.assert_close(half[name], (rec[name] + don[name]) / 2)
    assert_loads(tmp_path / "half")


def test_sharded_output_loads(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    summary = interpolate(*pair, tmp_path / "out", alpha=0.5, max_shard_bytes=40_000)
    files = summary["weight_files"]
    assert len(files) > 2 and files[-1] == "model.safetensors.index.json"
    index = json.loads((tmp_path / "out" / files[-1]).read_text())
    assert set(index["weight_map"]) == set(weights(pair[1]))
    assert_loads(tmp_path / "out")


# --------------------------------------------------------------------------- stage and CLI


def test_cli(tmp_path: Path, pair: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    surgery.add_cli(parser.add_subparsers(dest="command"))
    common = ["--donor", str(pair[0]), "--recipient", str(pair[1])]
    for argv in (
        ["uv", *common, "--out", str(tmp_path / "uv"), "--k-top", "0.2", "--k-tail", "3"],
        ["reset", *common, "--out", str(tmp_path / "reset"), "--layers", "0-1", "--lm-head"],
        ["interp", *common, "--out", str(tmp_path / "interp"), "--alpha", "0.25"],
    ):
        args = parser.parse_args(["surgery", *argv])
        assert args.func(args) == 0
        assert (tmp_path / argv[0] / "model.safetensors").exists()
    assert "reset: 15 of" in capsys.readouterr().out  # 2 layers x 7 matrices + lm_head


def test_stage_run_writes_model(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    from sftrl import store

    params = {"method": "reset", "layers": "first_quarter", "embeddings": True, "lm_head": True}
    params |= {"donor": {"label": "peak"}, "recipient": {"label": "end"}}
    parents = {"donor": "a" * 16, "recipient": "b" * 16}
    spec = {
        "stage": "surgery",
        "id": store.artifact_id("surgery", params, parents),
        "params": params,
        "parents": parents,
        "inputs": {"donor": str(pair[0]), "recipient": str(pair[1])},
        "root": str(tmp_path),
    }
    surgery.run(spec)
    art = store.artifact_dir(tmp_path, "surgery", spec["id"])
    assert store.verify(art) == []
    assert store.read_manifest(art)["summary"]["tensors_modified"] == 7 + 2
    assert_loads(art / "model")


# --------------------------------------------------------------------------- registry


def test_registry_matches_the_schema() -> None:
    """Each method's parameters are its schema entry's keys (surgery.<name>), with the
    function's defaults where the schema declares one; the schema names no other method."""
    import inspect

    from sftrl.config import load_schema

    sections = load_schema()["properties"]["surgery"]["properties"]
    assert set(sections) == set(surgery.methods())
    for name, method in surgery.methods().items():
        schema = sections[name]["items"]["properties"]
        assert set(schema) == {p.key for p in method.params if p.stage}, name
        signature = inspect.signature(method.function).parameters
        for param in method.params:
            assert param.kwarg in signature, (name, param.kwarg)
            if param.stage and "default" in schema[param.key]:
                assert schema[param.key]["default"] == signature[param.kwarg].default


def _artifact(root: Path, stage: str, params: dict, parents: dict, inputs: dict, write) -> str:
    """A real artifact of the store, its files written by ``write(path)``; its id."""
    from sftrl import store

    spec = {"stage": stage, "params": params, "parents": parents, "inputs": inputs}
    spec |= {"id": store.artifact_id(stage, params, parents), "root": str(root)}
    with store.open_artifact(spec) as art:
        write(art.path)
    return spec["id"]


def _eval_files(rates: dict[str, float]):
    """Writer of an evaluation's summary.json and predictions.parquet: per checkpoint, its
    success rate on each split (4 items)."""
    import pandas as pd

    splits = ("id_seen", "id_unseen", "ood")

    def metrics(rate: float) -> dict:
        success = {"rate": rate, "low": rate / 2, "high": (1 + rate) / 2}
        return {"n": 4, "success": success, "mean_reward_at_1": rate, "number_accuracy": 1.0}

    def write(path: Path) -> None:
        models = {
            c: {"splits": {s: metrics(r) | {"says_ten_rate": 0.0} for s in splits}}
            for c, r in rates.items()
        }
        (path / "summary.json").write_text(json.dumps({"models": models}))
        rows = [
            {"checkpoint": c, "split": s, "item": i, "sample": 0, "success": i < 4 * r}
            for c, r in rates.items()
            for s in splits
            for i in range(4)
        ]
        pd.DataFrame(rows).to_parquet(path / "predictions.parquet")

    return write


def test_layer_specs_go_through_tables_and_figures(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    """Every layer selection surgery accepts (named fractions, lists of ranges) reaches the
    tables and figures: real surgery and store artifacts, synthetic evaluations."""
    from sftrl import tables
    from sftrl.figures.build import build_figure

    donor, recipient = pair
    root = tmp_path / "results"
    sft = _artifact(root, "sft", {"kind": "stand-in"}, {}, {}, lambda path: None)
    _artifact(root, "eval", {}, {"model": "hf:base"}, {}, _eval_files({"model": 0.25}))
    sft_eval = _artifact(
        root, "eval", {}, {"model": sft}, {}, _eval_files({donor.name: 0.75, recipient.name: 0.25})
    )
    listed = [{"stage": "sft", "id": sft}, {"stage": "eval", "id": sft_eval}]
    for layers in ("first_quarter", "0,2-3", [1, 3]):
        params = {"method": "reset", "layers": layers}
        parents = {"donor": sft, "recipient": sft}
        inputs = {"donor": str(donor), "recipient": str(recipient)}
        spec = {"stage": "surgery", "params": params, "parents": parents, "inputs": inputs}
        spec |= {"id": surgery_id(params, parents), "root": str(root)}
        surgery.run(spec)
        ev = _artifact(root, "eval", {}, {"model": spec["id"]}, {}, _eval_files({"model": 0.5}))
        listed += [{"stage": "surgery", "id": spec["id"]}, {"stage": "eval", "id": ev}]
    for art in listed:
        art |= {"dir": str(root / art["stage"] / art["id"]), "label": art["stage"]}
    collected = tables.collect(listed, {"0": "hf:base"})
    recovery = collected["recovery"][collected["recovery"]["split"] == "ood"]
    assert sorted(zip(recovery["setting"], recovery["fraction"], strict=True)) == [
        ("layers=0,2-3", 0.75),
        ("layers=[1, 3]", 0.5),
        ("layers=first_quarter", 0.25),
    ]
    assert recovery["recovery"].tolist() == [0.5, 0.5, 0.5]  # 50% between 25% and 75%
    folder = tmp_path / "tables"
    folder.mkdir()
    for name, frame in collected.items():
        frame.to_parquet(folder / f"{name}.parquet")
    drawn = {}
    for figure in ("surgery", "recovery"):
        build_figure(figure, folder, tmp_path / f"{figure}.pdf", {})
        drawn[figure] = json.loads((tmp_path / f"{figure}.json").read_text())
    assert drawn["surgery"]["panels"] == ["A  Layer reset"]
    assert drawn["surgery"]["empty_panels"] == []
    assert "C  Recovery by layer reset / interpolation" not in drawn["recovery"]["empty_panels"]


def surgery_id(params: dict, parents: dict) -> str:
    from sftrl import store

    return store.artifact_id("surgery", params, parents)

"""sftrl.spectrum: SVD diagnostics between two checkpoints (docs/science.md section 6)."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from sftrl import spectrum
from sftrl.spectrum import (
    bin_edges,
    compute_spectrum,
    matrix_diagnostics,
    paired_angles,
    principal_angles,
)
from sftrl.weights import check_k, layer_of, module_filter, module_of, parse_k, resolve_k, thin_svd

torch.set_num_threads(1)

N_LAYERS = 4
# Matrices of the tiny Llama: 7 per layer + embed_tokens + lm_head (untied).
N_MATRICES = 7 * N_LAYERS + 2


def make_model_pair(root: Path, noise: float = 0.3, seed: int = 0) -> tuple[Path, Path]:
    """A tiny random Llama and a copy with every floating tensor perturbed (relative noise)."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=50,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(cfg)
    ref, tgt = root / "ref", root / "tgt"
    model.save_pretrained(ref)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(noise * param.std() * torch.randn_like(param) if param.ndim == 2 else 0.01)
    model.save_pretrained(tgt)
    return ref, tgt


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_model_pair(tmp_path_factory.mktemp("spectrum"))


@pytest.fixture(scope="module")
def tables(pair: tuple[Path, Path]) -> dict[str, pd.DataFrame]:
    return compute_spectrum(*pair, k=0.25, device="cpu", progress=False)


def random_orthonormal(m: int, p: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(m, p, generator=gen, dtype=torch.float64))
    return q


# --------------------------------------------------------------------------- pure functions


def test_import_is_light() -> None:
    """The CLI imports these modules to register subcommands: no torch/pandas at import."""
    code = (
        "import sys, sftrl.spectrum, sftrl.surgery; "
        "print(sorted({'torch', 'pandas', 'numpy', 'safetensors'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_names_layers_modules() -> None:
    assert layer_of("model.layers.12.self_attn.q_proj.weight") == 12
    assert layer_of("model.language_model.layers.3.mlp.up_proj.weight") == 3
    assert layer_of("model.embed_tokens.weight") is None
    assert layer_of("lm_head.weight") is None
    assert module_of("model.layers.0.mlp.down_proj.weight") == "down_proj"
    assert module_of("model.embed_tokens.weight") == "embed_tokens"
    assert module_of("lm_head.weight") == "lm_head"


def test_resolve_and_parse_k() -> None:
    assert resolve_k(0.2, 35) == 7  # 7.000000000000001 must not round up to 8
    assert resolve_k(0.5, 33) == 17  # half up
    assert resolve_k(1.0, 32) == 32
    assert resolve_k(0.001, 32) == 1  # at least one triplet
    assert resolve_k(768, 32) == 32  # counts are clipped to the rank
    assert resolve_k(0.0, 32, minimum=0) == 0
    assert parse_k("768") == 768 and isinstance(parse_k("768"), int)
    assert parse_k("0.2") == 0.2 and parse_k("1.0") == 1.0 and isinstance(parse_k("1.0"), float)
    for bad in (0, 0.0, 1.5, -1):
        with pytest.raises(ValueError):
            check_k(bad)
    with pytest.raises(TypeError):
        check_k(True)


def test_module_filter() -> None:
    keep = module_filter(["q_proj", r"layers\.1\..*mlp"])
    assert keep("model.layers.0.self_attn.q_proj.weight")
    assert keep("model.layers.1.mlp.up_proj.weight")
    assert not keep("model.layers.2.mlp.up_proj.weight")
    assert module_filter(None)("anything") and module_filter([])("anything")
    assert module_filter("[")("a[b")  # invalid regex: literal substring


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (30, 30)])
def test_cheap_orientation_svd_equals_direct(shape: tuple[int, int]) -> None:
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u, s, v = thin_svd(w)
    u0, s0, v0 = thin_svd(w, cheap=False)
    r = min(shape)
    assert u.shape == (shape[0], r) and v.shape == (shape[1], r) and s.shape == (r,)
    torch.testing.assert_close(s, s0)
    torch.testing.assert_close(u * s @ v.T, w)
    # Same singular vectors up to one sign per triplet, applied to u and v together.
    sign = torch.sign((u * u0).sum(0))
    torch.testing.assert_close(u * sign, u0)
    torch.testing.assert_close(v * sign, v0)


@pytest.mark.parametrize(
    ("m", "p", "q", "noise"),
    [(40, 5, 5, 1.0), (40, 6, 3, 1.0), (40, 3, 6, 1.0), (30, 8, 8, 0.05), (30, 8, 8, 0.5)],
)
def test_principal_angles_match_scipy(m: int, p: int, q: int, noise: float) -> None:
    gen = torch.Generator().manual_seed(m + p + q)
    a = random_orthonormal(m, p, gen)
    # noise 1.0: unrelated subspaces; small noise: near-aligned (the arcsin branch).
    b_raw = torch.randn(m, q, generator=gen, dtype=torch.float64) * noise
    b_raw[:, : min(p, q)] += a[:, : min(p, q)]
    b = random_orthonormal(m, q, gen) if noise == 1.0 else torch.linalg.qr(b_raw)[0]
    angles, proj = principal_angles(a, b)
    expected = np.sort(scipy.linalg.subspace_angles(a.numpy(), b.numpy()))
    np.testing.assert_allclose(angles.numpy(), expected, atol=1e-10)
    explicit = torch.linalg.matrix_norm(a @ a.T - b @ b.T)  # the n x n definition
    assert proj.item() == pytest.approx(explicit.item(), abs=1e-10)


def test_principal_angles_of_identical_subspaces_are_zero_in_float32() -> None:
    a = random_orthonormal(64, 10, torch.Generator().manual_seed(3)).float()
    angles, proj = principal_angles(a, a)
    assert angles.abs().max() < 1e-5 and proj < 1e-5  # arccos alone would give ~5e-4
    assert paired_angles(a, -a).abs().max() == 0.0  # sign-invariant, exact


def test_paired_angles() -> None:
    gen = torch.Generator().manual_seed(4)
    a = random_orthonormal(30, 6, gen)
    b = random_orthonormal(30, 6, gen)
    expected = torch.arccos((a * b).sum(0).abs())
    torch.testing.assert_close(paired_angles(a, b, chunk=4), expected)


def test_bin_edges() -> None:
    assert bin_edges(10, 4) == [0, 3, 5, 8, 10]
    assert bin_edges(3, 20) == [0, 1, 2, 3]  # never more bins than indices
    edges = bin_edges(37, 20)
    for i in range(37):  # index i lies in bin floor(i * nb / rank)
        j = i * 20 // 37
        assert edges[j] <= i < edges[j + 1]


def test_energy_split_definitions() -> None:
    gen = torch.Generator().manual_seed(5)
    m, n = 24, 16
    u, _ = torch.linalg.qr(torch.randn(m, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    s = torch.linspace(5.0, 1.0, n, dtype=torch.float64)
    w = u * s @ v.T
    # Pure rescaling of the singular values: all of dW is "scaling".
    scalars, _ = matrix_diagnostics(w, u * (s * 1.1) @ v.T, 4)
    assert scalars["share_scaling"] == pytest.approx(1.0)
    assert scalars["share_rotation"] == pytest.approx(0.0, abs=1e-12)
    assert scalars["angle_u_max"] == pytest.approx(0.0, abs=1e-7)
    # A random dW on a tall matrix: the three shares partition its energy.
    dw = torch.randn(m, n, generator=gen, dtype=torch.float64) * 0.1
    scalars, arrays = matrix_diagnostics(w, w + dw, 4)
    shares = [scalars[f"share_{x}"] for x in ("scaling", "rotation", "outside")]
    assert all(0.0 <= x <= 1.0 for x in shares) and sum(shares) == pytest.approx(1.0)
    assert scalars["share_outside"] > 0.1  # (m - n) of m output directions lie outside U_b
    # ... and on a square one nothing lies outside the full thin bases.
    square = w[:n]
    sq, _ = matrix_diagnostics(square, square + dw[:n], 4)
    assert sq["share_outside"] == pytest.approx(0.0, abs=1e-10)
    # Item 6 against its literal formula, item 7 against torch.
    uk, vk = torch.linalg.svd(w, full_matrices=False)[0][:, :4], v[:, :4]
    literal = 1 - torch.linalg.matrix_norm(uk.T @ (w + dw) @ vk) ** 2 / (s[:4] ** 2).sum()
    assert scalars["residual"] == pytest.approx(literal.item(), abs=1e-10)
    np.testing.assert_allclose(arrays["s_dw"], torch.linalg.svdvals(dw).numpy())
    assert scalars["dw_top_sv"] == pytest.approx(arrays["s_dw"][:8].tolist())


@pytest.mark.parametrize("shape", [(24, 16), (16, 24)])
def test_published_align_and_delta_energy_at_k_below_rank(shape: tuple[int, int]) -> None:
    """align_* and delta_energy_* against a direct numpy computation of the published
    definitions (top-k bases of both models; the top-k block of U_b^T dW V_b), at k < rank,
    where they differ from bestmatch_* and share_*."""
    rng = np.random.default_rng(3)
    w_ref = rng.standard_normal(shape)
    w_tgt = w_ref + rng.standard_normal(shape)
    k = 5
    u_b, _, vt_b = np.linalg.svd(w_ref, full_matrices=False)
    u_t, _, vt_t = np.linalg.svd(w_tgt, full_matrices=False)
    ub, vb, ut, vt = u_b[:, :k], vt_b[:k].T, u_t[:, :k], vt_t[:k].T
    dw = w_tgt - w_ref
    block = ub.T @ dw @ vb
    dw_sq = np.sum(dw**2)
    expected = {
        "align_u": np.abs(ub.T @ ut).max(axis=1).mean(),
        "align_v": np.abs(vb.T @ vt).max(axis=1).mean(),
        "delta_energy_scaling": np.sum(np.diag(block) ** 2) / dw_sq,
        "delta_energy_rotation": (np.sum(block**2) - np.sum(np.diag(block) ** 2)) / dw_sq,
    }
    scalars, _ = matrix_diagnostics(torch.from_numpy(w_ref), torch.from_numpy(w_tgt), k)
    for name, value in expected.items():
        assert scalars[name] == pytest.approx(value, rel=1e-9), name
    # below full rank they are not today's bestmatch_* / share_* ...
    assert scalars["align_u"] < scalars["bestmatch_u"]
    assert scalars["delta_energy_rotation"] < scalars["share_rotation"]
    # ... and at k = rank they are
    full, _ = matrix_diagnostics(torch.from_numpy(w_ref), torch.from_numpy(w_tgt), min(shape))
    assert full["align_u"] == pytest.approx(full["bestmatch_u"])
    assert full["delta_energy_scaling"] == pytest.approx(full["share_scaling"])
    assert full["delta_energy_rotation"] == pytest.approx(full["share_rotation"])


def test_per_index_and_binned_angle_profiles() -> None:
    gen = torch.Generator().manual_seed(6)
    m, n = 60, 40
    q, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
    u, spare = q[:, :n], q[:, n]
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    s = torch.linspace(10.0, 1.0, n, dtype=torch.float64)
    c, sn = math.cos(0.5), math.sin(0.5)
    u_new = u.clone()
    u_new[:, 0] = c * u[:, 0] + sn * spare  # top vector leaves the span: the subspace moves
    u_new[:, -2] = c * u[:, -2] + sn * u[:, -1]  # last two turn within their own plane:
    u_new[:, -1] = -sn * u[:, -2] + c * u[:, -1]  # the vectors move, their span does not
    _, arrays = matrix_diagnostics(u * s @ v.T, u_new * s @ v.T, 4, bins=10)
    angle, binned = arrays["angle_u"], arrays["bin_angle_u"]
    np.testing.assert_allclose(angle[[0, -2, -1]], 0.5, atol=1e-9)
    np.testing.assert_allclose(angle[1:-2], 0.0, atol=1e-9)
    np.testing.assert_allclose(binned[:4], 0.5 / 4, atol=1e-9)  # bin 0: angles (0.5, 0, 0, 0)
    np.testing.assert_allclose(binned[4:], 0.0, atol=1e-7)
    assert (arrays["bin"] == np.repeat(np.arange(10), 4)).all()
    np.testing.assert_allclose(arrays["angle_v"], 0.0, atol=1e-9)
    assert arrays["bestmatch_idx_u"][-2] in (n - 2, n - 1)


# --------------------------------------------------------------------------- model pairs


def test_tables_shape_and_columns(tables: dict[str, pd.DataFrame]) -> None:
    pm, pi, pl = tables["per_matrix"], tables["per_index"], tables["per_layer"]
    assert len(pm) == N_MATRICES
    assert set(pm["module"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "embed_tokens",
        "lm_head",
    }
    assert pm["layer"].isna().sum() == 2 and set(pm["layer"].dropna()) == set(range(N_LAYERS))
    assert (pm["rank"] == 32).all() and (pm["k"] == 8).all()
    assert len(pi) == pm["rank"].sum()
    for column in (
        "matrix index s_ref s_tgt ds rel_ds angle_u angle_v bestmatch_u bestmatch_v "
        "rel_index bin_angle_u bin_angle_v s_dw"
    ).split():
        assert column in pi.columns, column
    assert pi["rel_index"].between(0, 1, inclusive="left").all()
    assert pi["angle_u"].between(0, math.pi / 2 + 1e-6).all()
    assert pi["bestmatch_u"].between(0, 1 + 1e-6).all()
    # per layer: one row per (layer, module) and one "*" row per layer (embeddings: <NA>).
    assert len(pl) == N_MATRICES + N_LAYERS + 1
    total = pl[pl["module"] == "*"]
    assert total["n_matrices"].sum() == N_MATRICES


def test_energy_shares_on_models(tables: dict[str, pd.DataFrame]) -> None:
    pm = tables["per_matrix"]
    shares = pm[["share_scaling", "share_rotation", "share_outside"]]
    assert ((shares >= 0) & (shares <= 1)).all().all()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-6)
    square = pm["rows"] == pm["cols"]
    np.testing.assert_allclose(pm.loc[square, "share_outside"], 0.0, atol=1e-5)
    assert (pm["dw_fro"] > 0).all() and (pm["angle_u_mean"] > 0).all()


def test_float64_close_to_float32(pair: tuple[Path, Path], tables: dict) -> None:
    t64 = compute_spectrum(*pair, k=0.25, dtype="float64", progress=False, modules=["q_proj"])
    pm32 = tables["per_matrix"].set_index("name").loc[t64["per_matrix"]["name"]]
    np.testing.assert_allclose(
        t64["per_matrix"]["angle_u_mean"], pm32["angle_u_mean"], rtol=1e-3, atol=1e-5
    )


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_identical_models(pair: tuple[Path, Path]) -> None:
    ref, _ = pair
    out = compute_spectrum(ref, ref, k=0.5, progress=False)
    pm, pi = out["per_matrix"], out["per_index"]
    assert (pm["dw_fro"] == 0).all()
    assert (pm["residual"] == 0).all()  # taken from C = 0, so exactly 0
    for column in ("angle_u_max", "angle_v_max", "proj_u", "proj_v"):
        assert pm[column].abs().max() < 1e-5, column
    assert (pi["angle_u"] == 0).all() and (pi["angle_v"] == 0).all()
    np.testing.assert_allclose(pm["bestmatch_u"], 1.0, atol=1e-6)
    assert pm[["share_scaling", "share_rotation", "share_outside"]].isna().all().all()
    assert (pm["sv_rel_l2"] == 0).all()
    # per-layer energy weighting must not divide by zero either
    assert out["per_layer"][["share_rotation"]].isna().all().all()


def test_module_filter_respected(pair: tuple[Path, Path]) -> None:
    out = compute_spectrum(*pair, k=3, modules=["q_proj", "embed"], progress=False)
    pm = out["per_matrix"]
    assert set(pm["module"]) == {"q_proj", "embed_tokens"}
    assert len(pm) == N_LAYERS + 1 and (pm["k"] == 3).all()
    assert set(out["per_index"]["matrix"]) == set(pm["name"])
    with pytest.raises(ValueError, match="no 2-D tensor"):
        compute_spectrum(*pair, modules=["no_such_module"], progress=False)


def test_sharded_checkpoint(tmp_path: Path, pair: tuple[Path, Path], tables: dict) -> None:
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(pair[1])
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    out = compute_spectrum(pair[0], tmp_path / "sharded", k=0.25, progress=False)
    pd.testing.assert_frame_equal(out["per_matrix"], tables["per_matrix"])


def test_cli_writes_tables(
    tmp_path: Path, pair: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    parser = argparse.ArgumentParser()
    spectrum.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["spectrum", *map(str, pair), "--k", "4", "--modules", "mlp", "--out", str(tmp_path)]
    )
    assert args.func(args) == 0
    for name in spectrum.TABLES:
        assert (tmp_path / f"{name}.parquet").exists()
    pm = pd.read_parquet(tmp_path / "per_matrix.parquet")
    assert len(pm) == 3 * N_LAYERS and (pm["k"] == 4).all()
    assert "layer" in capsys.readouterr().out


def test_stage_run_writes_artifact(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    from sftrl import store

    params = {"k": 0.25, "modules": ["o_proj"], "dtype": "float32", "target": {"label": "b"}}
    parents = {"reference": "a" * 16, "target": "b" * 16}
    spec = {
        "stage": "spectrum",
        "id": store.artifact_id("spectrum", params, parents),
        "params": params,
        "parents": parents,
        "inputs": {"reference": str(pair[0]), "target": str(pair[1])},
        "root": str(tmp_path),
    }
    spectrum.run(spec)
    art = store.artifact_dir(tmp_path, "spectrum", spec["id"])
    assert store.verify(art) == []
    assert len(pd.read_parquet(art / "per_matrix.parquet")) == N_LAYERS
    assert store.read_manifest(art)["summary"]["n_matrices"] == N_LAYERS
    with pytest.raises(ValueError, match="unknown params"):
        spectrum.run({**spec, "params": {"kk": 3}})


def test_random_update_null_beside_every_profile(pair: tuple[Path, Path], tables: dict) -> None:
    """The null: a Gaussian update of each matrix's ||dW||_F. Its energy is spread evenly over
    C = U^T R V, so its scaling share is ~1/r of square matrices (r = 32 here) whatever the
    real update does; it is seeded (same seed, same columns) and `null="none"` leaves it out."""
    import torch

    from sftrl.spectrum import NULL_INDEX_COLUMNS, NULL_SCALARS, random_update

    pm, pi, pl = tables["per_matrix"], tables["per_index"], tables["per_layer"]
    assert {f"null_{c}" for c in NULL_SCALARS} <= set(pm.columns)
    assert {f"null_{c}" for c in NULL_INDEX_COLUMNS} <= set(pi.columns)
    assert {"null_share_rotation", "null_angle_u_mean"} <= set(pl.columns)
    square = pm[pm["rows"] == pm["cols"]]
    assert 0.5 / 32 < square["null_share_scaling"].mean() < 2 / 32
    np.testing.assert_allclose(square["null_share_outside"], 0.0, atol=1e-5)
    dw = torch.randn(16, 8, dtype=torch.float64)
    r = random_update(dw, 0, "m")
    assert torch.isclose(torch.linalg.vector_norm(r), torch.linalg.vector_norm(dw))
    assert torch.equal(r, random_update(dw, 0, "m")) and not torch.equal(
        r, random_update(dw, 1, "m")
    )
    plain = compute_spectrum(*pair, k=0.25, progress=False, modules=["q_proj"], null="none")
    assert not [c for c in plain["per_matrix"].columns if c.startswith("null_")]
    with pytest.raises(ValueError, match="spectrum.null"):
        compute_spectrum(*pair, progress=False, null="shuffled")

"""sftrl.surgery.uv_random: the random-direction control of the UV merge."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sftrl import store, surgery
from sftrl.surgery.uv_random import uv_random
from sftrl.weights import thin_svd

torch.set_num_threads(1)

SHAPES = {
    "model.layers.0.self_attn.q_proj.weight": (12, 20),
    "model.layers.0.mlp.down_proj.weight": (20, 12),
    "model.norm.weight": (12,),
}


def model_dir(path: Path, seed: int) -> Path:
    """A weights-only model directory (what surgery reads), float32."""
    gen = torch.Generator().manual_seed(seed)
    path.mkdir(parents=True)
    tensors = {name: torch.randn(*shape, generator=gen) for name, shape in SHAPES.items()}
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("uv_random")
    return model_dir(root / "donor", 0), model_dir(root / "recipient", 1)


def test_random_directions_with_the_recipients_values(tmp_path: Path, pair) -> None:
    summary = uv_random(*pair, tmp_path / "out", k_top=3, k_tail=2, seed=7, dtype="float64")
    out, rec, don = (load_file(d / "model.safetensors") for d in (tmp_path / "out", *pair[::-1]))
    assert torch.equal(out["model.norm.weight"], rec["model.norm.weight"])
    for name, shape in SHAPES.items():
        if len(shape) != 2:
            continue
        n = min(shape)
        idx = [0, 1, 2, n - 2, n - 1]
        assert summary["matrices"][name] == {"rank": n, "k_top": 3, "k_tail": 2}
        u_t, s_t, v_t = thin_svd(rec[name].double())
        kept = rec[name].double() - (u_t[:, idx] * s_t[idx]) @ v_t[:, idx].T
        added = out[name].double() - kept
        # the added part is Q_U diag(S_T[R]) Q_V^T with orthonormal Q: its singular values are
        # the recipient's on R, its directions orthogonal to none of the recipient's in general
        u_a, s_a, v_a = thin_svd(added)
        torch.testing.assert_close(s_a[:5], s_t[idx].sort(descending=True).values)
        assert s_a[5:].abs().max() < 1e-5
        u_d = thin_svd(don[name].double())[0]
        for reference in (u_t[:, idx], u_d[:, idx]):
            overlap = torch.linalg.svdvals(reference.T @ u_a[:, :5])
            assert overlap.min() < 0.99  # not the recipient's (or the donor's) subspace


def test_seeded_and_independent_of_the_filter(tmp_path: Path, pair) -> None:
    uv_random(*pair, tmp_path / "a", k_top=0.25, seed=1)
    uv_random(*pair, tmp_path / "b", k_top=0.25, seed=1)
    uv_random(*pair, tmp_path / "c", k_top=0.25, seed=2)
    uv_random(*pair, tmp_path / "q", k_top=0.25, seed=1, modules=["q_proj"])
    a, b, c, q = (load_file(tmp_path / d / "model.safetensors") for d in "abcq")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a[name], c[name])
    assert torch.equal(a[name], q[name])  # a matrix's draw depends on its name, not the others


def test_stage_and_cli(tmp_path: Path, pair, capsys: pytest.CaptureFixture) -> None:
    params = {"method": "uv_random", "top": 2, "seed": 3, "donor": {}, "recipient": {}}
    parents = {"donor": "a" * 16, "recipient": "b" * 16}
    spec = {"stage": "surgery", "params": params, "parents": parents, "root": str(tmp_path)}
    spec |= {"id": store.artifact_id("surgery", params, parents)}
    spec["inputs"] = {"donor": str(pair[0]), "recipient": str(pair[1])}
    surgery.run(spec)
    art = store.artifact_dir(tmp_path, "surgery", spec["id"])
    assert store.read_manifest(art)["summary"]["actions"] == {"random": 2, "recipient": 1}
    parser = argparse.ArgumentParser()
    surgery.add_cli(parser.add_subparsers(dest="command"))
    files = ["--donor", str(pair[0]), "--recipient", str(pair[1]), "--out", str(tmp_path / "c")]
    args = parser.parse_args(["surgery", "uv_random", *files, "--k-top", "2", "--seed", "3"])
    assert args.func(args) == 0
    cli = load_file(tmp_path / "c" / "model.safetensors")
    staged = load_file(art / "model" / "model.safetensors")
    assert all(torch.equal(cli[n], staged[n]) for n in cli)
    assert "uv_random: 2 of 3 tensors modified" in capsys.readouterr().out

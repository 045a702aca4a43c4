"""The papers' architectures end to end on tiny random stand-ins (tests/tiny_archs.py): Qwen2,
Llama and Mllama (Llama-3.2-Vision, converted to its exact text-only Llama), each with a real
byte-level BPE tokenizer and its chat template, through SFT -> reload -> PPO and GRPO -> eval
-> spectrum -> surgery with `prompt_format: chat`, calling the stage functions on tiny specs.
"""

from __future__ import annotations

import pytest
import tiny_archs
import torch
from safetensors import safe_open

from sftrl import chat, evaluate, mllama
from sftrl.modeling import load_model, load_tokenizer
from sftrl.spectrum import compute_spectrum
from sftrl.surgery.reset import layer_reset
from sftrl.surgery.uv import uv_merge
from sftrl.train import grpo, ppo, rl_common
from sftrl.train.sft import read_rows, train_sft

CLASSES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM", "mllama": "LlamaForCausalLM"}
RL = {"max_new_tokens": 8, "sft_loss_every": 1, "sft_loss_rows": 4, "save_every": 0}


@pytest.fixture(scope="module", params=tiny_archs.ARCHITECTURES)
def run(request, tmp_path_factory):
    """Every stage once for one architecture; the tests below read what it wrote."""
    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    hub = tiny_archs.save_base(arch, root / "hub")
    out = {"arch": arch, "root": root, "hub": hub, "base": hub}
    if arch == "mllama":
        out["convert"] = mllama.convert(hub, root / "base")
        out["base"] = root / "base"
    data = tiny_archs.write_data(root / "data")
    out["data"] = data
    out["sft"] = train_sft(
        out["base"],
        read_rows(data / "sft_train.parquet"),
        root / "sft",
        params={
            "epochs": [1],
            "batch_size": 8,
            "lr": 1e-3,
            "warmup_steps": 0,
            "heldout_batch_size": 8,
            "prompt_format": "chat",
        },
        heldout_rows=read_rows(data / "sft_heldout.parquet"),
    )
    start = root / "sft" / "epoch-1"
    for stage in ("ppo", "grpo"):  # the store creates an artifact's folder before the stage
        (root / stage).mkdir()
    common = {**RL, "prompt_format": "chat", "seed": 0}
    out["ppo"] = ppo.train_from_dirs(
        start,
        data,
        {**common, "steps": 1, "rollout_batch_size": 4, "minibatch_size": 4,
         "micro_batch_size": 4, "ppo_epochs": 1},
        root / "ppo",
        base_model=out["base"],
    )  # fmt: skip
    out["grpo"] = grpo.train_from_dirs(
        start,
        data,
        {**common, "steps": 1, "num_generations": 2, "per_device_train_batch_size": 4,
         "max_completion_length": 8, "backend": "hf"},
        root / "grpo",
        base_model=out["base"],
    )  # fmt: skip
    out["eval"], out["predictions"] = evaluate.evaluate_model(
        root / "grpo" / "final",
        data,
        splits=["id_seen"],
        decoding={"max_new_tokens": 8},
        multi_try={"enabled": True, "max_tries": 2},
        limit=4,
        device="cpu",
        progress=False,
        prompt_format="chat",
    )
    out["spectrum"] = compute_spectrum(
        out["base"], root / "ppo" / "final", k=0.25, device="cpu", progress=False
    )
    # surgery between the base and SFT (one RL step from random weights may change nothing)
    layer_reset(out["base"], start, root / "reset", layers="0-0", embeddings=True)
    uv_merge(out["base"], start, root / "uv", k_top=0.2, device="cpu")
    return out


def _tensor_names(model_dir) -> set[str]:
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return set(f.keys())


CHECKPOINTS = ("sft/epoch-1", "ppo/final", "grpo/final", "reset", "uv")


def test_every_saved_checkpoint_reloads_as_the_text_model(run):
    from transformers import AutoModelForCausalLM

    names = _tensor_names(run["base"])
    for sub in CHECKPOINTS:
        path = run["root"] / sub
        model = AutoModelForCausalLM.from_pretrained(path)
        assert type(model).__name__ == CLASSES[run["arch"]], sub
        assert _tensor_names(path) == names, sub  # the same names as the base: spectra match


def test_training_and_evaluation_ran(run):
    assert run["sft"]["steps"] == 2 and run["sft"]["final_train_loss"] is not None
    for algo in ("ppo", "grpo"):
        assert set(run[algo]["sft_loss"]) >= {"base", "start", "final"}, algo
    split = run["eval"]["splits"]["id_seen"]
    assert split["n"] == 4 and split["max_tries"] == 2
    assert set(run["predictions"]["tries"]) <= {1, 2}


def test_spectrum_matches_every_matrix_of_the_base(run):
    per_matrix = run["spectrum"]["per_matrix"]
    with safe_open(str(run["base"] / "model.safetensors"), "pt") as f:
        matrices = [n for n in f.keys() if len(f.get_slice(n).get_shape()) == 2]
    assert len(per_matrix) == len(matrices) > 0


def test_layer_reset_indexes_the_text_decoder(run):
    donor = load_model(run["base"], device="cpu").state_dict()
    recipient = load_model(run["root"] / "sft" / "epoch-1", device="cpu").state_dict()
    reset = load_model(run["root"] / "reset", device="cpu").state_dict()
    q0, q1 = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(reset[q0], donor[q0]) and not torch.equal(reset[q0], recipient[q0])
    assert torch.equal(reset[q1], recipient[q1])
    assert torch.equal(reset["model.embed_tokens.weight"], donor["model.embed_tokens.weight"])


def _first_forward_ids(model, call) -> list[list[int]]:
    """The unpadded input ids of the first forward pass `call()` makes through `model`."""
    seen = []

    def hook(module, args, kwargs):
        if not seen:
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            seen.extend(row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        call()
    finally:
        handle.remove()
    return seen


def test_training_and_evaluation_tokenise_the_same_chat_prompt(run):
    """On token ids: the chat-templated prompt of a hand is what TRL's SFT and GRPO, our PPO
    rollouts and evaluation feed the model."""
    from trl import SFTConfig, SFTTrainer

    path = run["root"] / "sft" / "epoch-1"
    tok, model = load_tokenizer(path), load_model(path, device="cpu")
    rows = rl_common.read_rows(run["data"] / "sft_train.parquet", limit=2)  # every column
    prompt = rows[0]["prompt"]
    expected = chat.encode_prompt(tok, [chat.user(prompt)], "chat")
    # GRPO: TRL renders conversational prompts with apply_chat_template
    trl_ids = tok.apply_chat_template(
        [chat.trl_prompt(prompt, "chat")], add_generation_prompt=True, tokenize=True
    )
    trl_ids = trl_ids["input_ids"][0] if hasattr(trl_ids, "keys") else trl_ids[0]
    assert list(trl_ids) == expected
    # SFT: TRL's tokenisation of our conversational cells = our probe's ids and loss mask
    pairs = [chat.trl_prompt_completion(r["prompt"], r["completion"], "chat") for r in rows]
    from datasets import Dataset

    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(run["root"] / "sft-tok"),
            use_cpu=True,
            bf16=False,
            report_to=[],
            max_length=256,
            activation_checkpointing=False,
        ),
        train_dataset=Dataset.from_dict(
            {"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]}
        ),
        processing_class=tok,
    )
    for row, example in zip(rows, trainer.train_dataset, strict=True):
        ids, n_prompt = chat.encode_prompt_completion(tok, row["prompt"], row["completion"], "chat")
        assert example["input_ids"] == ids
        assert example["labels"] == [-100] * n_prompt + ids[n_prompt:]  # loss on the answer
    assert trainer.train_dataset[0]["input_ids"][: len(expected)] == expected
    # PPO rollout
    roll_ids = _first_forward_ids(
        model,
        lambda: ppo.rollout(
            model, tok, rows[:1], lambda t, r: ([0.0] * len(t), [False] * len(t)), 2, 1.0, None,
            "chat",
        ),
    )  # fmt: skip
    assert roll_ids == [expected]
    # evaluation
    eval_ids = _first_forward_ids(
        model,
        lambda: evaluate.evaluate_rows(
            model, tok, rows[:1], decoding={"max_new_tokens": 2}, prompt_format="chat"
        ),
    )
    assert eval_ids == [expected]


@pytest.mark.parametrize("run", ["mllama"], indirect=True)
def test_mllama_conversion_is_exact_on_logits(run):
    from transformers import MllamaForConditionalGeneration

    assert run["convert"]["max_logit_difference"] == 0.0
    assert run["convert"]["dropped_cross_attention_layers"] == [1]
    full = MllamaForConditionalGeneration.from_pretrained(run["hub"]).eval()
    converted = load_model(run["base"], device="cpu")
    tok = load_tokenizer(run["base"])
    prompt = read_rows(run["data"] / "sft_train.parquet")[0]["prompt"]
    ids = torch.tensor([chat.encode_prompt(tok, [chat.user(prompt)], "chat")])
    assert mllama.max_logit_difference(full, converted, ids) == 0.0
    # the hub directory itself also loads as the same text-only Llama
    assert mllama.max_logit_difference(load_model(run["hub"], device="cpu"), converted, ids) == 0


@pytest.mark.parametrize("run", ["mllama"], indirect=True)
def test_mllama_tensor_names_map_from_every_layout(run):
    from transformers import AutoModelForCausalLM, MllamaForConditionalGeneration

    full = MllamaForConditionalGeneration.from_pretrained(run["hub"])
    text_config = mllama.text_config_of(full.config)
    converted = _tensor_names(run["base"])
    layouts = {
        "hub files": _tensor_names(run["hub"]),
        "ForConditionalGeneration": set(full.state_dict()),
        "ForCausalLM": set(AutoModelForCausalLM.from_pretrained(run["hub"]).state_dict()),
    }
    for layout, names in layouts.items():
        mapped = {mllama.llama_tensor_name(n, text_config) for n in names} - {None}
        assert mapped == converted, layout
    assert mllama.llama_tensor_name("language_model.model.layers.1.cross_attn.q_proj.weight",
                                    text_config) is None  # fmt: skip
    assert (
        mllama.llama_tensor_name("language_model.model.layers.2.mlp.up_proj.weight", text_config)
        == "model.layers.1.mlp.up_proj.weight"
    )


def test_text_only_training_uses_every_parameter(run):
    """DDP fails on parameters no loss reaches: the converted model has none, unlike the
    Mllama text model with its cross-attention layers."""
    model = load_model(run["root"] / "sft" / "epoch-1", device="cpu").train()
    ids = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []
    if run["arch"] == "mllama":
        from transformers import AutoModelForCausalLM

        raw = AutoModelForCausalLM.from_pretrained(run["hub"]).train()
        raw(input_ids=ids, labels=ids).loss.backward()
        assert any("cross_attn" in n for n, p in raw.named_parameters() if p.grad is None)


# ----------------------------------------------------------------------------- plan and config

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _plan(*configs, **overrides):
    from sftrl.config import load_config
    from sftrl.plan import Plan

    files = [ROOT / "config.yaml", *(ROOT / "configs" / c for c in configs)]
    return Plan(load_config(*files, overrides=overrides))


def test_presets_render_chat_and_the_llama_preset_converts_once():
    plan = _plan("paper-llama-3.2-11b.yaml")
    (convert,) = plan.stage("convert")
    assert convert.params["hf_path"] == "meta-llama/Llama-3.2-11B-Vision-Instruct"
    assert plan.sft.inputs["base_model"] == convert.model_path("model")
    for stage in ("sft", "rl", "rlsft", "eval"):
        assert {a.params["prompt_format"] for a in plan.stage(stage)} == {"chat"}, stage
    assert {a.params["backend"] for a in plan.stage("eval")} == {"hf"}
    assert not _plan("paper-qwen2.5-7b.yaml").stage("convert")
    tiny = _plan()
    assert {a.params["prompt_format"] for a in tiny.stage("eval")} == {"raw"}


def test_prompt_format_is_in_the_ids():
    qwen = "paper-qwen2.5-7b.yaml"
    chat_ids, raw = _plan(qwen), _plan(qwen, model={"prompt_format": "raw"})
    for stage in ("sft", "eval", "rl", "rlsft"):
        assert {a.id for a in raw.stage(stage)}.isdisjoint(a.id for a in chat_ids.stage(stage))


def test_chat_without_a_template_is_refused_at_plan_time(tmp_path):
    from sftrl.config import ConfigError

    with pytest.raises(ConfigError, match="model.prompt_format = 'chat': the tiny model"):
        _plan(model={"prompt_format": "chat"})
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="has no chat template"):
        _plan(model={"source": "hf", "hf_path": str(tmp_path), "prompt_format": "chat"})


def test_vllm_backend_is_refused_at_plan_time_without_a_gpu():
    from sftrl.config import ConfigError

    with pytest.raises(ConfigError, match="generation.backend = 'vllm'.*resources.eval.gpu"):
        _plan(generation={"backend": "vllm"})


def test_a_local_mllama_checkpoint_must_be_converted(tmp_path):
    from sftrl.config import ConfigError

    (tmp_path / "config.json").write_text('{"model_type": "mllama"}')
    model = {"source": "hf", "hf_path": str(tmp_path)}
    with pytest.raises(ConfigError, match="model.text_only"):
        _plan(model=model)
    assert _plan(model={**model, "text_only": True}).stage("convert")


def test_vllm_backend_errors_clearly_where_it_cannot_run(tmp_path):
    from sftrl.vllm_generation import grpo_vllm_args, require_cuda, vllm_installed

    assert grpo_vllm_args("hf") == {"use_vllm": False}
    with pytest.raises(ValueError, match="backend"):
        grpo_vllm_args("tgi")
    if vllm_installed() and torch.cuda.is_available():
        pytest.skip("vLLM can run here: the GPU check covers it")
    with pytest.raises(RuntimeError, match="vllm"):
        require_cuda()
    with pytest.raises(RuntimeError, match="vllm"):
        grpo_vllm_args("vllm")

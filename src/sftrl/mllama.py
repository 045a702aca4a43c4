"""Llama-3.2-Vision (`model_type: mllama`) as the text model the papers trained: converted once
to a plain `LlamaForCausalLM`, exactly.

Why exact: in transformers' `MllamaTextModel.forward`, a decoder layer listed in
`text_config.cross_attention_layers` is skipped (`continue`) when there are no cross-attention
states (no image) and none cached, so text-only input runs only the self-attention layers,
which are Llama decoder layers (same attention, MLP, RMSNorm and llama3 RoPE). Dropping the
cross-attention layers, renumbering the remaining ones, and keeping the first `vocab_size` rows
of the embedding (the 8 extra rows are image/special ids text never uses) gives a Llama with
equal logits on every text token id (`max_logit_difference`; the tests and the convert stage
check it). The result reloads with `AutoModelForCausalLM` (model_type llama), trains with TRL,
has no unused parameters under DDP, and its tensor names are the reference's
(`model.layers.<i>.`, `model.embed_tokens`, `lm_head`), so spectra and layer-range surgery
index the text decoder directly.

`llama_tensor_name` is the ONE mapping from Mllama tensor names (as saved on the hub,
as `MllamaForConditionalGeneration` holds them, or as `MllamaForCausalLM` saves them) to the
converted names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

MLLAMA_TYPES = ("mllama", "mllama_text_model")
# prefixes of the text decoder in the three Mllama layouts, longest first
_TEXT_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.", "model.")
_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")


def model_type_of(path_or_config) -> str | None:
    """`model_type` of a config object, a local HF directory or a hub id in the local cache
    (None: not readable here, e.g. a hub id not downloaded on this machine)."""
    if not isinstance(path_or_config, (str, Path)):
        return getattr(path_or_config, "model_type", None)
    config_file = Path(path_or_config) / "config.json"
    if config_file.is_file():
        return json.loads(config_file.read_text()).get("model_type")
    from transformers.utils import cached_file

    try:  # a hub id: its config.json in HF_HOME's cache, never downloaded
        cached = cached_file(str(path_or_config), "config.json", local_files_only=True)
    except (OSError, ValueError):
        return None
    return json.loads(Path(cached).read_text()).get("model_type") if cached else None


def is_mllama(path_or_config) -> bool:
    return model_type_of(path_or_config) in MLLAMA_TYPES


def text_config_of(config):
    """The text decoder's config (`MllamaTextConfig`) of an Mllama config or of its text part."""
    return config.get_text_config(decoder=True) if config.model_type == "mllama" else config


def self_attention_layers(text_config) -> list[int]:
    """Mllama text layer indices that text-only input runs, in order (layer i of the converted
    model is the i-th of them)."""
    cross = set(text_config.cross_attention_layers)
    return [i for i in range(text_config.num_hidden_layers) if i not in cross]


def llama_tensor_name(name: str, text_config) -> str | None:
    """The converted model's name of an Mllama tensor, or None for tensors the text-only model
    drops (vision tower, projector, cross-attention layers)."""
    if name in ("lm_head.weight", "language_model.lm_head.weight"):
        return "lm_head.weight"
    rest = next((name[len(p) :] for p in _TEXT_PREFIXES if name.startswith(p)), None)
    if rest is None or rest.startswith(("vision_model.", "multi_modal_projector.")):
        return None
    match = _LAYER.match(rest)
    if match is None:
        return f"model.{rest}" if rest in ("embed_tokens.weight", "norm.weight") else None
    renumber = {old: new for new, old in enumerate(self_attention_layers(text_config))}
    layer = int(match.group(1))
    return f"model.layers.{renumber[layer]}.{match.group(2)}" if layer in renumber else None


def llama_config(text_config, dtype: torch.dtype | None = None):
    """The LlamaConfig of the converted model."""
    from transformers import LlamaConfig

    n_heads = text_config.num_attention_heads
    return LlamaConfig(
        vocab_size=text_config.vocab_size,
        hidden_size=text_config.hidden_size,
        intermediate_size=text_config.intermediate_size,
        num_hidden_layers=len(self_attention_layers(text_config)),
        num_attention_heads=n_heads,
        num_key_value_heads=text_config.num_key_value_heads,
        head_dim=text_config.hidden_size // n_heads,
        hidden_act=text_config.hidden_act,
        max_position_embeddings=text_config.max_position_embeddings,
        rms_norm_eps=text_config.rms_norm_eps,
        rope_parameters=dict(text_config.rope_parameters),
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        bos_token_id=text_config.bos_token_id,
        eos_token_id=text_config.eos_token_id,
        pad_token_id=text_config.pad_token_id,
        dtype=dtype,
    )


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], text_config
) -> dict[str, torch.Tensor]:
    """Converted tensors of an Mllama state dict (any of the three layouts)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        new = llama_tensor_name(name, text_config)
        if new is None:
            continue
        if new == "model.embed_tokens.weight":
            tensor = tensor[: text_config.vocab_size]  # the extra rows are image/special ids
        if new in out:
            raise ValueError(f"two Mllama tensors map to {new}")
        out[new] = tensor
    return out


def to_llama(model):
    """A `LlamaForCausalLM` with the text decoder of an Mllama model (ForConditionalGeneration
    or ForCausalLM); tensors are shared, not copied."""
    from transformers import LlamaForCausalLM

    text_config = text_config_of(model.config)
    params = convert_state_dict(model.state_dict(), text_config)
    dtype = next(iter(params.values())).dtype
    config = llama_config(text_config, dtype)
    with torch.device("meta"):  # no random init of billions of weights that are replaced
        llama = LlamaForCausalLM(config)
    missing, unexpected = llama.load_state_dict(params, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"Mllama -> Llama: missing {missing}, unexpected {unexpected}")
    # the one buffer (RoPE frequencies) is computed, not loaded: build it for real
    device = next(iter(params.values())).device
    with torch.device(device):
        llama.model.rotary_emb = type(llama.model.rotary_emb)(config=config)
    llama.generation_config = model.generation_config
    return llama.eval() if not model.training else llama


def load_text_only(path: str | Path, *, dtype: str = "float32", local_files_only: bool = True):
    """Load an Mllama checkpoint's text decoder and convert it (`to_llama`)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(  # MllamaForCausalLM: text weights only
        str(path), dtype=getattr(torch, dtype), local_files_only=local_files_only
    )
    return to_llama(model)


@torch.no_grad()
def max_logit_difference(model_a, model_b, input_ids: torch.Tensor) -> float:
    """max |logits_a - logits_b| on the same ids (text only: no image inputs)."""
    a = model_a(input_ids=input_ids).logits.float()
    b = model_b(input_ids=input_ids).logits.float()
    return float((a - b).abs().max())


def probe_ids(tokenizer, n_rows: int = 2) -> torch.Tensor:
    """Fixed text ids to check a conversion on (a GeneralPoints prompt, repeated)."""
    from sftrl.game import RULES, render_prompt

    rule = RULES["id"] if "id" in RULES else next(iter(RULES.values()))
    text = render_prompt(["A", "5", "K", "10"][: rule.n_cards], rule)
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return torch.tensor([ids] * n_rows)


# ----------------------------------------------------------------------------- plan


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """Plan-time: a local Mllama checkpoint must be converted (`model.text_only: true`), or the
    spectra of the base against any checkpoint would find no common tensor names."""
    model = config["model"]
    if model["source"] != "hf" or model["text_only"] or not model["hf_path"]:
        return []
    if is_mllama(model["hf_path"]):
        return [
            f"config key model.text_only = false: {model['hf_path']} is an Mllama "
            "(Llama-3.2-Vision) checkpoint; set model.text_only: true to train its text decoder"
        ]
    return []


# ----------------------------------------------------------------------------- stage


def convert(src: str | Path, out_dir: str | Path, *, dtype: str = "float32") -> dict[str, Any]:
    """Write the text-only Llama of `src` to `out_dir` (HF directory with the tokenizer) and
    return the proof: the max logit difference of source and converted model on probe ids."""
    from transformers import AutoModelForCausalLM

    from sftrl.modeling import load_tokenizer, save_model

    source = AutoModelForCausalLM.from_pretrained(
        str(src), dtype=getattr(torch, dtype), local_files_only=True
    ).eval()
    tokenizer = load_tokenizer(src)
    llama = to_llama(source)
    difference = max_logit_difference(source, llama, probe_ids(tokenizer))
    save_model(llama, tokenizer, out_dir)
    text_config = text_config_of(source.config)
    return {
        "source_model_type": source.config.model_type,
        "dropped_cross_attention_layers": list(text_config.cross_attention_layers),
        "layers": len(self_attention_layers(text_config)),
        "parameters": sum(p.numel() for p in llama.parameters()),
        "max_logit_difference": difference,
    }


def run(spec: Mapping[str, Any]) -> None:
    """Convert stage: params {"hf_path", "dtype"}; writes `model/`. Fails unless exact."""
    from sftrl.store import open_artifact

    params = spec["params"]
    with open_artifact(spec) as art:
        summary = convert(params["hf_path"], Path(art.path) / "model", dtype=params["dtype"])
        if summary["max_logit_difference"] != 0.0:
            raise RuntimeError(f"text-only conversion is not exact: {summary}")
        art.summary.update(summary)

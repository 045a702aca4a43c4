"""Tokenizer, tiny Llama model, and loading of any Hugging Face causal LM.

The tiny model reads the project's space-separated text with a word-level tokenizer. How it
splits numbers is config `model.tiny.number_tokens` (NUMBER_TOKENS):

- `word`: every word and every number 0..200 is ONE token, so the face values 11, 12, 13 are
  tokens that ID data (J/Q/K = 10) never shows the model;
- `digits`: numbers are digit sequences, as in Qwen2.5: "11" -> "1" "1", the same digit tokens
  ID data trains. A space is carried by the token after it, SentencePiece style ("a 11 b" ->
  "a" "_" "1" "1" "_b", "_" standing for U+2581): a number starts with a lone space token and
  its digits follow, so "11" and "1 1" stay different sequences and decoding is exact.

Saved models are plain HF directories that `AutoModelForCausalLM` / `AutoTokenizer` load with no
custom code and no network.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from sftrl.weights import resolve_device

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
MAX_NUMBER_TOKEN = 200  # numbers 0..200 are always in the vocabulary (targets, partial results)


def set_seed_everywhere(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def offline() -> bool:
    """True when the environment forbids the hub (then loaders never touch the network)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------- tokenizer


NUMBER_TOKENS = ("word", "digits")  # config model.tiny.number_tokens (module docstring)
WORD_START = "\u2581"  # digits: the space a token starts with (SentencePiece's "lower one eighth")


def check_number_tokens(number_tokens: str) -> str:
    if number_tokens not in NUMBER_TOKENS:
        raise ValueError(f"number_tokens must be one of {NUMBER_TOKENS}, got {number_tokens!r}")
    return number_tokens


def pre_tokenizer(number_tokens: str = "word"):
    """How text is cut into vocabulary pieces before the word-level lookup."""
    from tokenizers import pre_tokenizers

    if check_number_tokens(number_tokens) == "word":
        return pre_tokenizers.WhitespaceSplit()
    return pre_tokenizers.Sequence(
        [
            # "a 11 b" -> "a", "_11", "_b": each space kept, on the piece it precedes
            pre_tokenizers.Metaspace(replacement=WORD_START, prepend_scheme="never", split=True),
            # "_11" -> "_", "1", "1": digits never share a token with anything
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )


def tokenizer_vocabulary(
    texts: Iterable[str], extra_tokens: Iterable[str] = (), number_tokens: str = "word"
) -> list[str]:
    """Special tokens first, then the sorted union of every other token we may ever see."""
    from sftrl.game import vocabulary

    words = set(extra_tokens)
    for text in texts:
        words.update(text.split())
    words.update(vocabulary())
    words.update(str(n) for n in range(MAX_NUMBER_TOKEN + 1))
    if check_number_tokens(number_tokens) == "digits":
        # every word's pieces, first in a text and after a space (the digits 0..9 come from
        # the numbers above)
        cut = pre_tokenizer(number_tokens).pre_tokenize_str
        words = {piece for w in words for text in (w, " " + w) for piece, _ in cut(text)}
    words.difference_update(SPECIAL_TOKENS)
    return list(SPECIAL_TOKENS) + sorted(words)


def build_tokenizer(
    texts: Iterable[str],
    extra_tokens: Iterable[str] = (),
    *,
    number_tokens: str = "word",
    padding_side: str = "right",
):
    """Word-level tokenizer over whitespace-split text (numbers split as `number_tokens`, see the
    module docstring); prepends [BOS] to every encoding.

    Deterministic: the vocabulary order depends only on the set of tokens. Special tokens are
    registered as added tokens, so "}[EOS]" (TRL appends EOS without a space) splits correctly.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {
        tok: i for i, tok in enumerate(tokenizer_vocabulary(texts, extra_tokens, number_tokens))
    }
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizer(number_tokens)
    if number_tokens == "digits":  # the spaces are in the tokens: decoding only glues them
        core.decoder = decoders.Metaspace(
            replacement=WORD_START, prepend_scheme="never", split=True
        )
    # BOS via the post-processor: a prompt's ids are then a prefix of prompt+completion's ids.
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        padding_side=padding_side,
        # The default clean-up glues " ," into "," and breaks the exact round trip.
        clean_up_tokenization_spaces=False,
    )


def number_tokens_of(tokenizer) -> str:
    """`digits` when the tokenizer splits "11" into more than one token, else `word`."""
    return "digits" if len(tokenizer("11", add_special_tokens=False)["input_ids"]) > 1 else "word"


def load_tokenizer(path_or_hub_id: str | Path, *, padding_side: str | None = None):
    """AutoTokenizer for any HF model, offline-friendly; pad falls back to EOS when missing."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        str(path_or_hub_id), local_files_only=_local_only(path_or_hub_id)
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if padding_side is not None:
        tok.padding_side = padding_side
    return tok


# ----------------------------------------------------------------------------- model


def tiny_config(
    vocab_size: int,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    max_position_embeddings: int,
    number_tokens: str = "word",
    **extra,
):
    """The tiny model's LlamaConfig from the config's `model.tiny` sizes (also what the memory
    plan counts): untied embeddings, one KV head per attention head. `number_tokens` is the
    tokenizer's (`model.tiny` holds it too), not a LlamaConfig field."""
    from transformers import LlamaConfig

    check_number_tokens(number_tokens)

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        **extra,
    )


def build_tiny_model(
    tokenizer,
    *,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 512,
    max_position_embeddings: int = 256,
    number_tokens: str | None = None,
    seed: int = 0,
):
    """A randomly initialised Llama (LlamaConfig: AutoTokenizer keeps our word-level tokenizer
    with it, unlike Qwen2). Untied embeddings so every 2-D matrix is its own weight.

    `number_tokens` (config `model.tiny.number_tokens`, None: not checked) must be how
    `tokenizer` splits numbers: the tokenizer is built before the model, and a config asking
    for digit tokens must never silently get a word-level model."""
    from transformers import LlamaForCausalLM

    if number_tokens is not None and number_tokens_of(tokenizer) != number_tokens:
        raise ValueError(
            f"model.tiny.number_tokens = {number_tokens!r} but the tokenizer splits numbers as "
            f"{number_tokens_of(tokenizer)!r}: build it with "
            f"build_tokenizer(..., number_tokens={number_tokens!r})"
        )
    config = tiny_config(
        len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    set_seed_everywhere(seed)  # the weights depend only on (config, seed)
    model = LlamaForCausalLM(config)
    set_generation_defaults(model, tokenizer)
    return model


def set_generation_defaults(model, tokenizer) -> None:
    """Greedy decoding with our pad/eos ids, so a bare `generate()` is deterministic."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def save_model(
    model, tokenizer, out_dir: str | Path, *, dtype: str | None = None, state_dict=None
) -> Path:
    """Write a standard HF directory: model.safetensors, config, generation config, tokenizer.

    `dtype` ("float32", "bfloat16"): the dtype of the saved floating-point weights (None: as in
    memory); `state_dict`: the full weights when `model` holds only a shard (ZeRO-3)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if is_peft(model):  # save a plain merged model, never adapter-only; training goes on
        model = merge_lora(copy.deepcopy(model))
    if model.generation_config is None or model.generation_config.pad_token_id is None:
        set_generation_defaults(model, tokenizer)
    target = getattr(torch, dtype) if dtype is not None else None
    if state_dict is None and (target is None or model.dtype == target):
        model.save_pretrained(out)
    else:
        state = state_dict if state_dict is not None else model.state_dict()
        if target is not None:
            state = {k: v.to(target) if v.is_floating_point() else v for k, v in state.items()}
        model.save_pretrained(out, state_dict=state)
        if target is not None:  # config.json names the saved dtype, not the one in memory
            config_path = out / "config.json"
            config = json.loads(config_path.read_text())
            config["dtype"] = dtype
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(out)
    return out


def load_model(path_or_hub_id: str | Path, *, dtype: str = "float32", device: str = "auto"):
    """Any HF causal LM (local dir or hub id), in eval mode on `device`. An Mllama
    (Llama-3.2-Vision) directory loads as its exact text-only Llama (`sftrl.mllama`)."""
    from transformers import AutoModelForCausalLM

    from sftrl import mllama  # models, #11

    if mllama.is_mllama(path_or_hub_id):
        model = mllama.load_text_only(path_or_hub_id, dtype=dtype)
        return model.to(resolve_device(device)).eval()
    model = AutoModelForCausalLM.from_pretrained(
        str(path_or_hub_id),
        dtype=getattr(torch, dtype),
        local_files_only=_local_only(path_or_hub_id),
    )
    return model.to(resolve_device(device)).eval()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _local_only(path_or_hub_id: str | Path) -> bool:
    return offline() or Path(path_or_hub_id).is_dir()


# ----------------------------------------------------------------------------- LoRA


def lora_config(
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
):
    """peft LoraConfig for a causal LM. The analysed runs use full fine-tuning: a merged LoRA
    delta has rank r exactly, which would make the spectral diagnostics trivial."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )


def is_peft(model) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def merge_lora(model):
    """Fold LoRA adapters into the base weights (before saving or any weight analysis).
    In place: the adapters are gone afterwards (deep-copy first to keep training)."""
    return model.merge_and_unload() if is_peft(model) else model

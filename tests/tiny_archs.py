"""Tiny random stand-ins of the papers' real architectures, built locally (nothing downloaded).

- `qwen2`: a `Qwen2ForCausalLM` with a byte-level BPE tokenizer and Qwen2.5's chat template
  (`<|im_start|>` turns, default system prompt, EOS `<|im_end|>`);
- `llama`: a `LlamaForCausalLM` with a byte-level BPE tokenizer and Llama-3-Instruct's chat
  template (`<|start_header_id|>` headers, BOS `<|begin_of_text|>`, EOS `<|eot_id|>`);
- `mllama`: an `MllamaForConditionalGeneration` (vision tower + text decoder with
  cross-attention layers), the Llama-3 tokenizer plus `<|image|>`, saved in the hub layout.

The BPE is trained with `tokenizers` on GeneralPoints text (prompts, answers, feedback), so a
prompt is a few dozen tokens, as with the real tokenizers' merges of English words.
"""

from __future__ import annotations

from pathlib import Path

import torch

ARCHITECTURES = ("qwen2", "llama", "mllama")

# Qwen2.5-Instruct's template (the tool-calling branches left out: no tools here).
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Llama-3-Instruct's template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
LLAMA3_SPECIAL = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)


def game_texts() -> list[str]:
    """Prompts, answers and feedback of every rule: the BPE's training text."""
    import random

    from sftrl.game import (
        RULES,
        render_completion,
        render_feedback,
        render_prompt,
        sample_hand,
        solve,
    )
    from sftrl.game.rules import card_values

    rng = random.Random(0)
    texts = []
    for rule in RULES.values():
        for _ in range(40):
            hand = sample_hand(rng, rule, solvable_only=True)
            texts.append(render_prompt(hand, rule))
            formula = solve(list(card_values(hand, rule)), rule.target)
            texts.append(render_completion(hand, rule, formula))
    texts += [render_feedback("", r) for r in ("the formula is not valid", "wrong numbers")]
    texts += ["system user assistant You are Qwen, created by Alibaba Cloud. helpful"]
    return texts


def build_bpe_tokenizer(arch: str, vocab_size: int = 600):
    """A byte-level BPE tokenizer with the architecture's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = list(QWEN_SPECIAL if arch == "qwen2" else LLAMA3_SPECIAL)
    if arch == "mllama":
        special.append("<|image|>")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(game_texts(), trainer=trainer)
    if arch == "qwen2":
        return PreTrainedTokenizerFast(
            tokenizer_object=core,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            chat_template=QWEN_TEMPLATE,
            clean_up_tokenization_spaces=False,
        )
    from tokenizers import processors

    bos = "<|begin_of_text|>"
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, core.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos,
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        chat_template=LLAMA3_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def _text_dims(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def build_model(arch: str, tokenizer, seed: int = 0):
    """A randomly initialised model of `arch` sized for CI (hidden 32, 2 self-attention
    layers; Mllama adds one cross-attention layer between them and a 1-layer vision tower)."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MllamaConfig,
        MllamaForConditionalGeneration,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from sftrl.modeling import set_generation_defaults

    torch.manual_seed(seed)
    dims = _text_dims(tokenizer)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=2, **dims))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, **dims))
    elif arch == "mllama":
        rope = {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        }
        dims = {k: v for k, v in dims.items() if k != "tie_word_embeddings"}
        config = MllamaConfig(
            text_config=dict(
                num_hidden_layers=3, cross_attention_layers=[1], rope_parameters=rope, **dims
            ),
            vision_config=dict(
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_global_layers=1,
                attention_heads=2,
                image_size=28,
                patch_size=14,
                vision_output_dim=32,
                intermediate_layers_indices=[0],
                max_num_tiles=1,
                supported_aspect_ratios=[[1, 1]],
            ),
            image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
        )
        model = MllamaForConditionalGeneration(config)
        with torch.no_grad():  # trained gates are non-zero (zero gates make the layer a no-op)
            for name, param in model.named_parameters():
                if "cross_attn" in name and name.endswith("gate"):
                    param.fill_(0.5)
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    set_generation_defaults(model, tokenizer)
    return model.eval()


def save_base(arch: str, out_dir: Path) -> Path:
    """Tokenizer + random model of `arch` as an HF directory (Mllama: the hub layout)."""
    tokenizer = build_bpe_tokenizer(arch)
    model = build_model(arch, tokenizer)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def write_data(out_dir: Path, **sizes) -> Path:
    """A small data artifact directory (the data stage's files) under the default rules."""
    from sftrl.config import load_config
    from sftrl.data import build_splits, write_splits
    from sftrl.plan import Plan

    root = Path(__file__).resolve().parents[1]
    data = {"sft_hands": 16, "sft_heldout_hands": 8, "rl_hands": 16, "eval_hands": 4, **sizes}
    config = load_config(root / "config.yaml", overrides={"data": data})
    rows, _ = build_splits(Plan(config).data.params)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_splits(rows, out_dir)
    return out_dir

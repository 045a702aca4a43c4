"""Helpers the RL tests share: a toy policy and reward, a tiny game data set and base model,
stage specs, and PPO's micro settings."""

import random

import torch

WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "go", "a", "b", "c", "d", "e", "f", "g", "h"]
TOY_ROWS = [{"prompt": "go " + " ".join("bcdefgh"[:k])} for k in range(1, 6)]


def toy_policy(seed: int = 0, hidden: int = 32):
    """A tiny random Llama and a word-level tokenizer over WORDS (BOS prepended)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", 2)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        clean_up_tokenization_spaces=False,
    )
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tok


def first_word_is_a(texts, rows):
    """Toy reward: 1 when the answer starts with 'a' (a random policy: ~1/13)."""
    rewards = [1.0 if t.split()[:1] == ["a"] else 0.0 for t in texts]
    return rewards, [r > 0 for r in rewards]


def tiny_game_setup(root, n_rl: int = 8, n_sft: int = 16):
    """A data dir (rl_prompts, sft_train, sft_heldout under the ID rule) and a tiny random
    base model dir built with the project's tokenizer and model code."""
    import pandas as pd

    from sftrl.data import make_rows
    from sftrl.game import RULES, sample_hand
    from sftrl.modeling import build_tiny_model, build_tokenizer, save_model

    rule, rng = RULES["id"], random.Random(0)

    def rows(n):  # the data stage's rows (prompt, completion, cards, rule, ...)
        return make_rows([sample_hand(rng, rule) for _ in range(n)], rule, with_completion=True)

    data = root / "data"
    data.mkdir()
    splits = {"rl_prompts": rows(n_rl), "sft_train": rows(n_sft), "sft_heldout": rows(4)}
    for name, split in splits.items():
        pd.DataFrame(split).to_parquet(data / f"{name}.parquet")
    texts = [r["prompt"] + " " + r["completion"] for split in splits.values() for r in split]
    tok = build_tokenizer(texts)
    model = build_tiny_model(tok, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    save_model(model, tok, root / "base")
    return data, root / "base", splits


def stage_spec(root, stage: str, params: dict, inputs: dict) -> dict:
    from sftrl.store import artifact_id

    parents = {"start": "0" * 16}
    return {
        "stage": stage,
        "id": artifact_id(stage, params, parents),
        "params": params,
        "parents": parents,
        "inputs": {k: str(v) for k, v in inputs.items()},
        "root": str(root / "results"),
    }


MICRO = dict(
    steps=12,
    rollout_batch_size=16,
    minibatch_size=8,
    micro_batch_size=4,
    lr=3e-3,
    temperature=1.0,
    max_new_tokens=4,
    warmup_ratio=0.0,
    save_every=0,
    sft_loss_every=0,
)

"""Tokenizer round trip and save -> from_pretrained of the tiny model (offline, no custom code)."""

from __future__ import annotations

import pytest
import torch

from sftrl.game import RULES, card_values, render_completion, render_prompt, solve
from sftrl.modeling import (
    build_tiny_model,
    build_tokenizer,
    count_parameters,
    load_model,
    load_tokenizer,
    save_model,
)

TINY = dict(
    hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256
)


def sample_texts() -> list[str]:
    id_rule, ood_rule = RULES["id"], RULES["ood"]
    texts = []
    for cards, rule in [(("K", "2", "Q", "7"), ood_rule), (("A", "5", "5", "5"), id_rule)]:
        formula = solve(card_values(cards, rule), rule.target)
        texts.append(render_prompt(cards, rule))
        texts.append(render_completion(cards, rule, formula))
    texts.append("target 18 | numbers 2 13 2 12 | formula 13 + 2 + 2 / 2 = 18")
    return texts


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(sample_texts())


def test_tokenizer_round_trip(tokenizer):
    for text in sample_texts():
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_numbers_are_whole_tokens(tokenizer):
    ids = tokenizer("11 1 1 200", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["11", "1", "1", "200"]


def test_eos_glued_to_text_still_splits(tokenizer):
    # TRL appends the EOS string without a space
    ids = tokenizer('" }' + tokenizer.eos_token)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids


def test_vocabulary_is_deterministic():
    a, b = build_tokenizer(sample_texts()), build_tokenizer(list(reversed(sample_texts())))
    assert a.get_vocab() == b.get_vocab()
    assert a.convert_ids_to_tokens(list(range(4))) == ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


def test_save_and_reload_identical_logits(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_tiny_model(tokenizer, seed=3, **TINY)
    assert count_parameters(model) > 0
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    out = save_model(model, tokenizer, tmp_path / "m")
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tok2 = AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = sample_texts()[0]
    assert tok2(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, reloaded(ids).logits)
    gen = reloaded.generation_config
    assert gen.pad_token_id == tokenizer.pad_token_id and gen.eos_token_id == tokenizer.eos_token_id
    assert not gen.do_sample

    # the project's loaders give the same model
    loaded = load_model(out, device="cpu")
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reloaded(ids).logits)
    assert load_tokenizer(out, padding_side="left").padding_side == "left"


def test_same_seed_same_weights(tokenizer):
    a = build_tiny_model(tokenizer, seed=7, **TINY)
    b = build_tiny_model(tokenizer, seed=7, **TINY)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))

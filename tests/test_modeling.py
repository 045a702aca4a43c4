"""Tokenizer round trip and save -> from_pretrained of the tiny model (offline, no custom code)."""

from __future__ import annotations

import pytest
import torch

from sftrl.game import RULES, card_values, render_completion, render_prompt, solve
from sftrl.modeling import (
    WORD_START,
    build_tiny_model,
    build_tokenizer,
    count_parameters,
    load_model,
    load_tokenizer,
    number_tokens_of,
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


# ----------------------------------------------------------------------------- digit tokens


@pytest.fixture(scope="module")
def digit_tokenizer():
    return build_tokenizer(sample_texts(), extra_tokens=[")*"], number_tokens="digits")


def test_digit_tokens_round_trip(digit_tokenizer):
    texts = [
        *sample_texts(),
        "10 11 13 24 100 1 1",
        "(11+13)*1",
        ' { "number" : [ 13 , 2 , 12 , 7 ] } ',  # leading/trailing spaces survive too
    ]
    for text in texts:
        ids = digit_tokenizer(text)["input_ids"]
        assert ids[0] == digit_tokenizer.bos_token_id
        assert digit_tokenizer.unk_token_id not in ids, text
        assert digit_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_digit_tokens_split_every_number(digit_tokenizer):
    def pieces(text):
        ids = digit_tokenizer(text, add_special_tokens=False)["input_ids"]
        return digit_tokenizer.convert_ids_to_tokens(ids)

    space = WORD_START
    assert pieces("11 1 1 100") == ["1", "1", space, "1", space, "1", space, "1", "0", "0"]
    assert pieces("(11+13)*1") == ["(", "1", "1", "+", "1", "3", ")*", "1"]
    # a digit is one token wherever it stands: J=11 is the ace's token twice
    assert pieces("is 11")[-2:] == pieces("is 1")[-1:] * 2
    assert not any(t.strip(space).isdigit() and len(t.strip(space)) > 1 for t in pieces("10 24"))
    assert number_tokens_of(digit_tokenizer) == "digits"


def test_digit_tokens_eos_and_prefix(digit_tokenizer):
    from sftrl.chat import encode_prompt_completion

    ids = digit_tokenizer('" }' + digit_tokenizer.eos_token)["input_ids"]
    assert ids[-1] == digit_tokenizer.eos_token_id and digit_tokenizer.unk_token_id not in ids
    prompt, completion = sample_texts()[0], sample_texts()[1]
    full, n_prompt = encode_prompt_completion(digit_tokenizer, prompt, completion, "raw")
    assert full[:n_prompt] == digit_tokenizer(prompt)["input_ids"]  # the prompt is a prefix
    answer = digit_tokenizer.decode(full[n_prompt:], skip_special_tokens=True)
    assert answer == " " + completion  # TRL's joining space, then the exact answer


def test_digit_tokenizer_saves_and_reloads(digit_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_tiny_model(digit_tokenizer, seed=0, number_tokens="digits", **TINY)
    out = save_model(model, digit_tokenizer, tmp_path / "m")
    reloaded = load_tokenizer(out)
    text = "(11+13)*1 = 24 " + sample_texts()[1]
    assert reloaded(text)["input_ids"] == digit_tokenizer(text)["input_ids"]
    assert reloaded.decode(reloaded(text)["input_ids"], skip_special_tokens=True) == text
    assert number_tokens_of(reloaded) == "digits"


def test_model_refuses_a_tokenizer_of_the_other_kind(tokenizer, digit_tokenizer):
    assert number_tokens_of(tokenizer) == "word"
    build_tiny_model(tokenizer, number_tokens="word", **TINY)
    with pytest.raises(ValueError, match="number_tokens = 'digits'"):
        build_tiny_model(tokenizer, number_tokens="digits", **TINY)
    with pytest.raises(ValueError, match="must be one of"):
        build_tokenizer([], number_tokens="bytes")

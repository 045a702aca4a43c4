"""Prompt rendering (sftrl.chat): raw keeps today's text and ids; chat is the tokenizer's own
template (Qwen2.5's and Llama-3's, written locally), tokenised as TRL tokenises it."""

import pytest
import tiny_archs

from sftrl import chat, evaluate
from sftrl.game import RULES, render_completion, render_feedback, render_prompt
from sftrl.modeling import build_tokenizer

HAND = ["A", "5", "K", "10"]
PROMPT = render_prompt(HAND, RULES["id"])
ANSWER = render_completion(HAND, RULES["id"], "( 1 + 5 ) * ( 10 - 10 + 4 )")


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def templated(request):
    return request.param, tiny_archs.build_bpe_tokenizer(request.param)


@pytest.fixture(scope="module")
def word_level():
    return build_tokenizer([PROMPT, ANSWER])


def test_raw_one_turn_is_the_prompt_unchanged(word_level):
    assert chat.render_prompt(word_level, [chat.user(PROMPT)], "raw") == PROMPT
    ids = chat.encode_prompt(word_level, [chat.user(PROMPT)], "raw")
    assert ids == word_level(PROMPT)["input_ids"]  # [BOS] + words, as before prompt_format


def test_raw_multi_turn_joins_turns_with_single_spaces():
    feedback = render_feedback("", "wrong numbers")
    messages = [chat.user(PROMPT + " "), chat.assistant(" " + ANSWER), chat.user(feedback)]
    assert chat.render_prompt(None, messages, "raw") == f"{PROMPT} {ANSWER} {feedback}"


def test_raw_sft_ids_are_prompt_answer_eos(word_level):
    ids, n_prompt = chat.encode_prompt_completion(word_level, PROMPT, ANSWER, "raw")
    assert ids == word_level(f"{PROMPT} {ANSWER}{word_level.eos_token}")["input_ids"]
    assert ids[:n_prompt] == word_level(PROMPT)["input_ids"]


def test_chat_needs_a_template(word_level):
    with pytest.raises(ValueError, match="chat template"):
        chat.render_prompt(word_level, [chat.user(PROMPT)], "chat")
    with pytest.raises(ValueError, match="prompt_format"):
        chat.render_prompt(word_level, [chat.user(PROMPT)], "jinja")


def test_chat_prompt_is_the_real_template_text(templated):
    arch, tok = templated
    text = chat.render_prompt(tok, [chat.user(PROMPT)], "chat")
    if arch == "qwen2":
        assert text == (
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            f"assistant.<|im_end|>\n<|im_start|>user\n{PROMPT}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
    else:
        assert text == (
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
            f"{PROMPT}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        )


def test_chat_ids_are_what_trl_tokenises(templated):
    """GRPO (TRL) tokenises prompts with apply_chat_template; BOS appears exactly once."""
    _, tok = templated
    ids = chat.encode_prompt(tok, [chat.user(PROMPT)], "chat")
    trl_ids = tok.apply_chat_template(
        [chat.user(PROMPT)], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert ids == list(trl_ids)
    if tok.bos_token_id is not None:
        assert ids.count(tok.bos_token_id) == 1


def test_chat_sft_ids_end_with_the_end_of_turn(templated):
    _, tok = templated
    ids, n_prompt = chat.encode_prompt_completion(tok, PROMPT, ANSWER, "chat")
    assert ids[:n_prompt] == chat.encode_prompt(tok, [chat.user(PROMPT)], "chat")
    assert tok.eos_token_id in ids[n_prompt:]  # the loss covers the end of turn
    answer = tok.decode(ids[n_prompt:], skip_special_tokens=True)
    assert answer.strip() == ANSWER


def test_chat_multi_try_turns_are_user_and_assistant_turns(templated):
    """Multi-try evaluation: the answer becomes an assistant turn, the verifier's reason a
    user turn, and the next prompt ends with the generation prompt."""
    arch, tok = templated
    rows = [{"prompt": PROMPT, "cards": HAND, "rule": RULES["id"].to_json()}]
    seen = []

    def respond(prompts):
        seen.extend(prompts)
        return ["no json"] * len(prompts)

    evaluate.multi_try_verify(
        respond,
        rows,
        max_tries=2,
        first_completions=["not an answer"],
        render=lambda m: chat.render_prompt(tok, m, "chat"),
    )
    (second,) = seen
    expected = chat.render_prompt(
        tok,
        [
            chat.user(PROMPT),
            chat.assistant("not an answer"),
            chat.user(render_feedback("", "the answer is not a JSON object")),
        ],
        "chat",
    )
    assert second.split("You failed")[0] == expected.split("You failed")[0]
    header = "<|im_start|>user\n" if arch == "qwen2" else "<|start_header_id|>user"
    assert second.count(header) == 2
    assert second.endswith(chat.render_prompt(tok, [chat.user("x")], "chat").split("x")[-1])


def test_trl_cells(word_level):
    assert chat.trl_prompt(PROMPT, "raw") == PROMPT
    assert chat.trl_prompt(PROMPT, "chat") == [chat.user(PROMPT)]
    assert chat.trl_prompt_completion(PROMPT, ANSWER, "raw") == (PROMPT, " " + ANSWER)
    assert chat.completion_text([chat.assistant(ANSWER)]) == ANSWER

"""Prompt rendering: the ONE place that turns a conversation into the text a model reads.

A conversation is a list of messages ``{"role": "user" | "assistant", "content": str}``: the
hand's prompt is the first user turn, an answer is an assistant turn, and in multi-try
evaluation each verifier message ("You failed this trial because ...") is a new user turn, as in
the published evaluator.

``prompt_format`` (config ``model.prompt_format``, a param of every stage that renders):

- ``raw``: the contents joined by single spaces, no template (the tiny model's format; a
  one-message conversation is its content unchanged). Tokenised WITH the tokenizer's special
  tokens (the tiny tokenizer prepends [BOS]); an SFT answer is followed by the EOS token.
- ``chat``: the tokenizer's own chat template (Qwen's ``<|im_start|>``, Llama-3's
  ``<|start_header_id|>``, ...). A conversation that ends on a user turn gets the generation
  prompt (the assistant header) appended; one that ends on an assistant turn is rendered
  whole, with the template's end-of-turn token. The template writes BOS itself, so the text
  is tokenised WITHOUT special tokens (exactly what TRL does for conversational data).

Training (SFT, GRPO, PPO rollouts, the SFT-loss probe) and evaluation all call
``encode_prompt`` / ``encode_prompt_completion`` (or, for TRL, ``trl_prompt`` /
``trl_prompt_completion``, which TRL renders with the same template and the same tokenisation),
so what a model is trained on and what it is evaluated on are the same token ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RAW, CHAT = "raw", "chat"
PROMPT_FORMATS = (RAW, CHAT)
ROLES = ("user", "assistant")

Message = Mapping[str, str]


def check_format(prompt_format: str) -> str:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    return prompt_format


def prompt_format_of(params: Mapping[str, Any]) -> str:
    """A stage's prompt format (the plan puts `prompt_format` in every rendering stage's params;
    the schema's default `raw` applies when a caller outside the workflow leaves it out)."""
    return check_format(params.get("prompt_format", RAW))


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """Plan-time: `chat` needs a tokenizer with a chat template (the tiny model has none; a
    local HF directory is checked for one, a hub id only when its job loads it)."""
    import json
    from pathlib import Path

    model = config["model"]
    if model["prompt_format"] != CHAT:
        return []
    if model["source"] == "tiny":
        return [
            "config key model.prompt_format = 'chat': the tiny model's tokenizer has no chat "
            "template (use raw)"
        ]
    local = Path(model["hf_path"] or "")
    files = [local / "tokenizer_config.json", local / "chat_template.jinja"]
    if local.is_dir() and files[0].is_file():
        has_template = files[1].is_file() or "chat_template" in json.loads(files[0].read_text())
        if not has_template:
            return [
                f"config key model.prompt_format = 'chat': {local} has no chat template "
                "(tokenizer_config.json chat_template or chat_template.jinja); use raw"
            ]
    return []


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _check_messages(messages: Sequence[Message]) -> None:
    if not messages:
        raise ValueError("a conversation needs at least one message")
    for m in messages:
        if m.get("role") not in ROLES:
            raise ValueError(f"message role must be one of {ROLES}, got {m.get('role')!r}")


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, messages: Sequence[Message], prompt_format: str) -> str:
    """The text of `messages` in `prompt_format` (see the module docstring)."""
    _check_messages(messages)
    if check_format(prompt_format) == RAW:
        if len(messages) == 1:
            return str(messages[0]["content"])
        parts = (str(m["content"]).strip() for m in messages)
        return " ".join(p for p in parts if p)
    if not has_chat_template(tokenizer):
        raise ValueError(
            "prompt_format 'chat' needs a tokenizer with a chat template "
            "(set model.prompt_format: raw for models without one, e.g. the tiny model)"
        )
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        tokenize=False,
        add_generation_prompt=messages[-1]["role"] == "user",
    )


def encode_text(tokenizer, text: str, prompt_format: str) -> list[int]:
    """Token ids of rendered text (special tokens only in raw: the template writes its own)."""
    return list(tokenizer(text, add_special_tokens=check_format(prompt_format) == RAW)["input_ids"])


def encode_prompt(tokenizer, messages: Sequence[Message], prompt_format: str) -> list[int]:
    """Token ids a model is given for `messages` (training rollouts and evaluation alike)."""
    return encode_text(tokenizer, render_prompt(tokenizer, messages, prompt_format), prompt_format)


def join_raw(prompt: str, completion: str) -> tuple[str, str]:
    """Raw prompt/completion as TRL concatenates them (strings): keep a space between them, so
    a whitespace-split tokenizer never glues the last prompt word to the first answer word."""
    if prompt and completion and not prompt[-1].isspace() and not completion[0].isspace():
        completion = " " + completion
    return prompt, completion


def encode_prompt_completion(
    tokenizer, prompt: str, completion: str, prompt_format: str
) -> tuple[list[int], int]:
    """(ids of prompt + answer + end of answer, prompt length) exactly as TRL's SFT builds them
    (the loss is on ids[n_prompt:]): raw appends the EOS token, chat the template's end of turn.
    The prompt length is the common prefix of the prompt's and the whole sequence's ids."""
    if check_format(prompt_format) == RAW:
        prompt, completion = join_raw(prompt, completion)
        prompt_ids = encode_text(tokenizer, prompt, RAW)
        full_ids = encode_text(tokenizer, prompt + completion + tokenizer.eos_token, RAW)
    else:
        prompt_ids = encode_prompt(tokenizer, [user(prompt)], CHAT)
        full_ids = encode_prompt(tokenizer, [user(prompt), assistant(completion)], CHAT)
    n_prompt = 0
    while n_prompt < min(len(prompt_ids), len(full_ids)) and (
        prompt_ids[n_prompt] == full_ids[n_prompt]
    ):
        n_prompt += 1
    return full_ids, n_prompt


# ----------------------------------------------------------------------------- TRL datasets


def trl_prompt(prompt: str, prompt_format: str) -> str | list[dict[str, str]]:
    """A dataset `prompt` cell for TRL: the string (raw) or a conversation (chat), which TRL
    renders with the tokenizer's template and the generation prompt, as `render_prompt` does."""
    return prompt if check_format(prompt_format) == RAW else [user(prompt)]


def trl_prompt_completion(prompt: str, completion: str, prompt_format: str) -> tuple[Any, Any]:
    """Dataset `prompt` and `completion` cells for TRL's SFTTrainer (loss on the completion)."""
    if check_format(prompt_format) == RAW:
        return join_raw(prompt, completion)
    return [user(prompt)], [assistant(completion)]


def completion_text(completion: str | Sequence[Message]) -> str:
    """The answer text of a TRL completion (a string, or a conversation of assistant turns)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m["content"]) for m in completion)

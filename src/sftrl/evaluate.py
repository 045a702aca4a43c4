"""Evaluation: batched generation with a KV cache, scoring, multi-try verification, summaries.

Pipeline of the eval stage (``run(spec)``): for every split file ``eval_<split>.parquet`` of a
data artifact, generate answers to the ``prompt`` column, score each answer with
``sftrl.game.score`` (docs/science.md section 3), optionally give failed answers up to
``max_tries - 1`` more attempts with the game's feedback, and write ``summary.json`` (per split:
success with a Wilson interval, mean@1 reward, error categories, ...) and ``predictions.parquet``
(one row per item and sample). ``backend`` (config ``generation.backend``) picks the generator:
``hf`` (the loop below) or ``vllm`` (``sftrl.vllm_generation``, CUDA only).

Generation (``generate``) is our own greedy / sampling loop over a Hugging Face causal LM:

* prompts are rendered by ``sftrl.chat`` in the stage's ``prompt_format`` (raw text, or the
  tokenizer's chat template; multi-try turns become user/assistant turns) and tokenized as in
  training (``chat.encode_text``), sorted by length (longest first) and cut into batches; the
  results come back in the caller's order;
* each batch is LEFT-padded by hand (the tokenizer's ``padding_side`` does not matter) with an
  attention mask and explicit position ids (0 at each prompt's first real token), so a padded
  prompt sees exactly what it would see alone;
* one forward pass over the prompts fills the KV cache, then one token per step; a row stops at
  its first EOS (the tokenizer's and the generation config's EOS ids), the batch stops when every
  row has stopped or after ``max_new_tokens``;
* greedy (``temperature == 0``) takes the arg-max; sampling (``temperature > 0``) draws by inverse
  CDF from ``softmax(logits / temperature)`` with ONE seeded CPU ``torch.Generator`` per
  (prompt index, sample index), seeded from ``(seed, prompt index, sample index)``: the samples
  are reproducible and do not depend on the batch size or on the other prompts of the call;
* completions are the generated tokens before EOS, decoded with special tokens skipped and
  without the tokenizer's space clean-up (the project's text is space-separated).

Evaluation imports torch, transformers (through ``sftrl.modeling``), pandas and ``sftrl.game``
only: never trl or datasets (their import costs seconds per job).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sftrl import chat
from sftrl.data import EVAL_SPLITS as SPLITS
from sftrl.game.reward import CATEGORIES
from sftrl.generation import greedy, left_pad, sample_tokens
from sftrl.stats import proportion

log = logging.getLogger(__name__)


# Defaults of the eval stage's params (the config schema is the authority; these are used to
# fill anything a caller leaves out and are documented in the report of the stage).
DEFAULT_PARAMS: dict[str, Any] = {
    "splits": list(SPLITS),
    "decoding": {"temperature": 0.0, "n": 1, "max_new_tokens": 64, "seed": 0},
    "batch_size": 64,
    "multi_try": {"enabled": False, "max_tries": 5},
    "limit": None,
    "device": "auto",
    "dtype": "float32",
    "reward_mode": "strict",  # config reward.mode: how answers are read (sftrl.game.score)
}

PREDICTION_COLUMNS = (
    "split",
    "item",
    "sample",
    "prompt",
    "cards",
    "values",
    "rule",
    "completion",
    "reward",
    "success",
    "category",
    "reason",
    "number_correct",
    "says_ten",
)
MULTI_TRY_COLUMNS = ("tries", "solved_at", "attempts", "attempt_categories")

Respond = Callable[[list[str]], list[str]]


# ----------------------------------------------------------------------------- generation


def _eos_ids(model, tokenizer) -> list[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(int(e) for e in eos)
    return sorted(ids)


def _pad_id(tokenizer, eos_ids: Sequence[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if eos_ids:
        return int(eos_ids[0])
    return 0


def _row_seed(seed: int, index: int, sample: int) -> int:
    """A well-mixed 63-bit seed for one (prompt, sample) stream; stable across runs/platforms."""
    state = np.random.SeedSequence([int(seed), int(index), int(sample)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _mix_seed(seed: int, *salt: int) -> int:
    return int(np.random.SeedSequence([int(seed), *map(int, salt)]).generate_state(1)[0])


@torch.inference_mode()
def _decode_batch(
    model,
    sequences: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    pad_id: int,
    eos_ids: Sequence[int],
    temperature: float,
    generators: Sequence[torch.Generator] | None,
) -> list[list[int]]:
    """Generate for one batch with the KV cache; returns the new tokens of each row, EOS cut."""
    device = model.device
    input_ids, attention_mask, _ = left_pad(sequences, pad_id)

    def inverse_cdf(logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits / temperature, dim=-1)
        cdf = probs.cumsum(dim=-1)
        draws = torch.cat([torch.rand(1, generator=g) for g in generators]).to(device)
        # first index whose cumulative probability exceeds the draw (total may be 1 - eps)
        token = torch.searchsorted(cdf, draws[:, None].to(cdf.dtype), right=True)[:, 0]
        return token.clamp(max=logits.shape[-1] - 1)

    generated = sample_tokens(
        model,
        input_ids.to(device),
        attention_mask.to(device),
        max_new_tokens=max_new_tokens,
        pad_id=pad_id,
        eos_ids=eos_ids,
        pick=inverse_cdf if temperature > 0 else greedy,
    ).tolist()
    eos_set = set(int(e) for e in eos_ids)
    result = []
    for row in generated:
        cut = next((i for i, t in enumerate(row) if t in eos_set), len(row))
        result.append(row[:cut])
    return result


def generate_token_ids(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    n: int = 1,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "generate",
    prompt_format: str = "raw",
) -> list[list[list[int]]]:
    """Like ``generate`` but returns the new token ids (EOS excluded) instead of text.
    ``prompts`` are texts rendered in ``prompt_format`` (``sftrl.chat.render_prompt``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    prompts = list(prompts)
    if not prompts:
        return []
    encoded = [chat.encode_text(tokenizer, p, prompt_format) for p in prompts]
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = _pad_id(tokenizer, eos_ids)
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(ids) for ids in encoded) + max_new_tokens
    if limit is not None and longest > limit:
        log.warning(
            "prompt + %d new tokens reach %d positions, over the model's "
            "max_position_embeddings %d",
            max_new_tokens,
            longest,
            limit,
        )

    greedy = temperature == 0
    samples_to_draw = 1 if greedy else n  # greedy answers are identical: compute once
    units = [(i, j) for i in range(len(prompts)) for j in range(samples_to_draw)]
    order = sorted(range(len(units)), key=lambda u: (-len(encoded[units[u][0]]), u))
    results: list[list[list[int] | None]] = [[None] * samples_to_draw for _ in prompts]

    was_training = model.training
    model.eval()
    try:
        from tqdm.auto import tqdm

        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=desc, disable=not progress, unit="batch"):
            chunk = order[start : start + batch_size]
            generators = None
            if not greedy:
                generators = [
                    torch.Generator().manual_seed(_row_seed(seed, *units[u])) for u in chunk
                ]
            new_tokens = _decode_batch(
                model,
                [encoded[units[u][0]] for u in chunk],
                max_new_tokens=max_new_tokens,
                pad_id=pad_id,
                eos_ids=eos_ids,
                temperature=temperature,
                generators=generators,
            )
            for u, tokens in zip(chunk, new_tokens, strict=True):
                i, j = units[u]
                results[i][j] = tokens
    finally:
        model.train(was_training)

    if greedy and n > 1:
        return [[list(r[0]) for _ in range(n)] for r in results]
    return results  # type: ignore[return-value]


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    n: int = 1,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "generate",
    prompt_format: str = "raw",
) -> list[list[str]]:
    """Completions for every prompt: ``result[i]`` holds ``n`` strings for ``prompts[i]``.

    Batched, KV-cached, left-padded; greedy for ``temperature == 0`` (then the ``n`` answers are
    identical and computed once), seeded sampling otherwise (see the module docstring). The text
    is the generated part only, cut at the first EOS, with special tokens skipped.
    """
    ids = generate_token_ids(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        n=n,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
        prompt_format=prompt_format,
    )
    return [[_decode(tokenizer, tokens) for tokens in per_prompt] for per_prompt in ids]


def _decode(tokenizer, tokens: Sequence[int]) -> str:
    return tokenizer.decode(
        list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=False
    )


# ----------------------------------------------------------------------------- scoring


def _records(rows) -> list[dict[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict(orient="records")
    return [dict(r) for r in rows]


def _plain(value: Any) -> Any:
    """numpy arrays / scalars (from parquet) to plain Python lists / scalars."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Scorer:
    """``sftrl.game.score`` with the rule JSON parsed once per distinct rule."""

    def __init__(self, reward_mode: str = "strict") -> None:
        from sftrl import game

        self._game = game
        self._mode = reward_mode
        self._rules: dict[str, Any] = {}

    def __call__(self, completion: str, row: Mapping[str, Any]):
        rule_json = row["rule"]
        rule = self._rules.get(rule_json)
        if rule is None:
            rule = self._rules[rule_json] = self._game.Rule.from_json(rule_json)
        return self._game.score(completion, _plain(row["cards"]), rule, mode=self._mode)


def _verdict_fields(verdict) -> dict[str, Any]:
    return {
        "reward": float(verdict.reward),
        "success": bool(verdict.success),
        "category": str(verdict.category),
        "reason": str(verdict.reason),
        "number_correct": None if verdict.number_correct is None else bool(verdict.number_correct),
        "says_ten": bool(verdict.says_ten),
    }


def _base_fields(row: Mapping[str, Any], item: int, sample: int) -> dict[str, Any]:
    return {
        "split": row.get("split"),
        "item": int(row["item"]) if "item" in row and row["item"] is not None else item,
        "sample": sample,
        "prompt": row["prompt"],
        "cards": [str(c) for c in _plain(row["cards"])],
        "values": _plain(row["values"]) if "values" in row else None,
        "rule": row["rule"],
    }


def _frame(records: list[dict[str, Any]], multi: bool) -> pd.DataFrame:
    columns = list(PREDICTION_COLUMNS) + (list(MULTI_TRY_COLUMNS) if multi else [])
    df = pd.DataFrame.from_records(records, columns=columns)
    df["number_correct"] = df["number_correct"].astype("boolean")
    for col in ("success", "says_ten"):
        df[col] = df[col].astype(bool)
    for col in ("item", "sample"):
        df[col] = df[col].astype("int64")
    df["reward"] = df["reward"].astype("float64")
    if multi:
        df["tries"] = df["tries"].astype("int64")
        df["solved_at"] = df["solved_at"].astype("int64")
    return df


def score_items(
    rows, completions: Sequence[str] | Sequence[Sequence[str]], *, reward_mode: str = "strict"
) -> pd.DataFrame:
    """Score one or several completions per row.

    ``rows``: a DataFrame or a sequence of mappings with ``prompt``, ``cards``, ``rule`` (and
    optionally ``split``, ``values``, ``item``). ``completions[i]`` is a string, or a list of
    strings (samples) for ``rows[i]``. Returns one row per (item, sample) with the columns
    ``PREDICTION_COLUMNS`` (``item`` = position in ``rows`` unless the rows carry one).
    ``reward_mode``: how answers are read (``sftrl.game.score``'s ``mode``).
    """
    records = _records(rows)
    if len(records) != len(completions):
        raise ValueError(f"{len(records)} rows but {len(completions)} completions")
    scorer = _Scorer(reward_mode)
    out = []
    for item, (row, comp) in enumerate(zip(records, completions, strict=True)):
        samples = [comp] if isinstance(comp, str) else list(comp)
        for sample, text in enumerate(samples):
            out.append(
                {
                    **_base_fields(row, item, sample),
                    "completion": text,
                    **_verdict_fields(scorer(text, row)),
                }
            )
    return _frame(out, multi=False)


def raw_render(messages: Sequence[Mapping[str, str]]) -> str:
    """The raw format (``sftrl.chat``): turns joined by single spaces."""
    return chat.render_prompt(None, messages, chat.RAW)


def multi_try_verify(
    respond: Respond,
    rows,
    *,
    max_tries: int = 5,
    first_completions: Sequence[str] | None = None,
    samples: Sequence[int] | None = None,
    reward_mode: str = "strict",
    render: Callable[[list[dict[str, str]]], str] = raw_render,
) -> pd.DataFrame:
    """Multi-try verification (docs/science.md 4): up to ``max_tries`` graded attempts per row.

    ``respond(prompts) -> completions`` answers a list of prompts (the model, or any callable).
    Attempt 1 answers the row's ``prompt`` (or uses ``first_completions`` when given). After a
    failed attempt the conversation grows by the answer (an assistant turn) and
    ``render_feedback(completion, verdict.reason)`` (a user turn), as in the published
    evaluator; ``render(messages)`` makes the next prompt text (default: the raw format, every
    turn joined by single spaces). A row stops at its first success.

    Returns the ``score_items`` columns for the FIRST attempt (so mean@1 and success@1 stay
    single-attempt metrics) plus ``tries`` (attempts made), ``solved_at`` (1-based attempt of the
    first success, 0 if none), ``attempts`` (every completion) and ``attempt_categories``.
    ``samples[i]`` sets the ``sample`` column (default 0).
    """
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    from sftrl.game import render_feedback

    records = _records(rows)
    if first_completions is not None and len(first_completions) != len(records):
        raise ValueError(f"{len(records)} rows but {len(first_completions)} first completions")
    scorer = _Scorer(reward_mode)
    conversations = [[chat.user(str(r["prompt"]))] for r in records]
    attempts: list[list[str]] = [[] for _ in records]
    verdicts: list[list[Any]] = [[] for _ in records]
    solved_at = [0] * len(records)

    for attempt in range(1, max_tries + 1):
        pending = [i for i in range(len(records)) if solved_at[i] == 0]
        if not pending:
            break
        if attempt == 1 and first_completions is not None:
            answers = [first_completions[i] for i in pending]
        else:
            answers = list(respond([render(conversations[i]) for i in pending]))
            if len(answers) != len(pending):
                raise ValueError(f"respond returned {len(answers)} answers for {len(pending)}")
        for i, text in zip(pending, answers, strict=True):
            verdict = scorer(text, records[i])
            attempts[i].append(text)
            verdicts[i].append(verdict)
            if verdict.success:
                solved_at[i] = attempt
            else:
                conversations[i] += [
                    chat.assistant(text),
                    chat.user(render_feedback(text, verdict.reason)),
                ]

    out = []
    for i, row in enumerate(records):
        sample = int(samples[i]) if samples is not None else 0
        out.append(
            {
                **_base_fields(row, i, sample),
                "completion": attempts[i][0],
                **_verdict_fields(verdicts[i][0]),
                "tries": len(attempts[i]),
                "solved_at": solved_at[i],
                "attempts": list(attempts[i]),
                "attempt_categories": [str(v.category) for v in verdicts[i]],
            }
        )
    return _frame(out, multi=True)


# ----------------------------------------------------------------------------- summaries


def _share(mask: pd.Series) -> float | None:
    return float(mask.mean()) if len(mask) else None


def summarize_split(
    df: pd.DataFrame, z: float = 1.96, max_tries: int | None = None
) -> dict[str, Any]:
    """Metrics of one split's prediction rows (one row per item and sample).

    With multi-try columns, ``success_at_k`` has k = 1 .. ``max_tries`` (the configured budget;
    default: the most attempts any row used), so the keys do not depend on the model.
    """
    n = int(len(df))
    success = df["success"].astype(bool)
    number = df["number_correct"]
    answered = number.notna()
    summary: dict[str, Any] = {
        "n": n,
        "n_items": int(df["item"].nunique()) if n else 0,
        "samples_per_item": int(df["sample"].nunique()) if n else 0,
        "success": proportion(int(success.sum()), n, z),
        "mean_reward_at_1": float(df["reward"].mean()) if n else None,
        "categories": {cat: _share(df["category"] == cat) for cat in CATEGORIES},
        # share of all answers whose "number" field lists the hand's values (None counts as wrong)
        "number_accuracy": _share(number.fillna(False).astype(bool)),
        # the same among answers that had a readable "number" field
        "number_accuracy_answered": (
            float(number[answered].astype(bool).mean()) if bool(answered.any()) else None
        ),
        "number_answered": _share(answered),
        "says_ten_rate": _share(df["says_ten"].astype(bool)),
    }
    unexpected = sorted(set(df["category"]) - set(CATEGORIES))
    if unexpected:
        summary["categories"].update({c: _share(df["category"] == c) for c in unexpected})

    if "solved_at" in df.columns:
        used = int(df["tries"].max()) if n else 1
        budget = max(used, int(max_tries or 1), 1)
        solved = df["solved_at"].astype(int)
        summary["max_tries"] = budget
        summary["success_at_k"] = {
            str(k): proportion(int(((solved >= 1) & (solved <= k)).sum()), n, z)
            for k in range(1, budget + 1)
        }
    else:
        summary["max_tries"] = 1
        summary["success_at_k"] = {"1": proportion(int(success.sum()), n, z)}

    if summary["samples_per_item"] > 1:
        any_success = df.groupby("item")["success"].any()
        summary["pass_at_n"] = proportion(int(any_success.sum()), int(len(any_success)), z)
    return summary


def summarize(
    df: pd.DataFrame, z: float = 1.96, max_tries: int | None = None
) -> dict[str, dict[str, Any]]:
    """Per-split metrics ``{split: summarize_split(rows of that split)}``.

    Splits come in the canonical order (id_seen, id_unseen, ood) then any other in order of
    appearance; rows without a split are summarised under ``"all"``.
    """
    splits = (
        df["split"].fillna("all")
        if "split" in df.columns
        else pd.Series(["all"] * len(df), index=df.index)
    )
    seen = list(dict.fromkeys(splits.tolist()))
    ordered = [s for s in SPLITS if s in seen] + [s for s in seen if s not in SPLITS]
    return {split: summarize_split(df[splits == split], z, max_tries) for split in ordered}


# ----------------------------------------------------------------------------- NLL probe
# Teacher-forced NLL of the solver's answers, face-card number tokens apart (docs/science.md,
# "Face-token NLL probe"): whether SFT makes the answers OOD needs less likely exactly where
# the tokens of the OOD face values are.


def face_numbers(rule) -> set[int]:
    """The numbers only a face card can have under `rule`: OOD (J/Q/K = 11/12/13) gives
    {11, 12, 13}; ID gives none (J/Q/K = 10 is also the card 10)."""
    from sftrl.game import FACE_LABELS, LABELS, card_values

    plain_cards = [label for label in LABELS if label not in FACE_LABELS]
    return set(rule.face_values) - set(card_values(plain_cards, rule))


def reference_rows(rows, answer_format: str = "spaced") -> list[dict[str, Any]]:
    """Each hand's prompt and the solver's answer, made as the data stage makes SFT rows
    (`sftrl.data.make_rows`), with the hand's face-only numbers."""
    from sftrl.data import make_rows
    from sftrl.game import Rule

    out = []
    for row in _records(rows):
        rule = Rule.from_json(str(row["rule"]))
        made = make_rows([list(row["cards"])], rule, True, answer_format)[0]
        out.append(
            {
                "prompt": str(row["prompt"]),
                "completion": made["completion"],
                "face_numbers": face_numbers(rule),
            }
        )
    return out


def face_token_mask(tokenizer, answer_ids: Sequence[int], numbers: set[int]) -> list[bool]:
    """Which answer tokens hold characters of a number in `numbers` (a whole-number token
    "11", or the digits "1" "1" of 11; never the space before it). A token's characters are
    found by decoding growing prefixes, exact for tokenizers that decode what they encode."""
    text = _decode(tokenizer, answer_ids)
    spans = [m.span() for m in re.finditer(r"\d+", text) if int(m.group()) in numbers]
    mask, start = [], 0
    for k in range(len(answer_ids)):
        end = len(_decode(tokenizer, answer_ids[: k + 1]))
        mask.append(any(s < end and start < e for s, e in spans))
        start = end
    return mask


def reference_nll(
    model,
    tokenizer,
    rows,
    *,
    answer_format: str = "spaced",
    batch_size: int = 64,
    prompt_format: str = "raw",
) -> dict[str, Any]:
    """The face-token NLL probe on one split's hands: mean NLL per answer token of the solver's
    answers over all tokens (`all`, = the SFT loss), over the tokens of face-only numbers
    (`face`; None when the split has none, as ID splits), over the last token of each face-only
    number (`face_last`: the token that settles 11 vs 12 vs 13, the whole number with word
    tokens, the units digit with digit tokens) and over the rest (`other`)."""
    from sftrl.train.sft import completion_token_nll

    refs = reference_rows(rows, answer_format)
    scored = completion_token_nll(
        model, tokenizer, refs, batch_size=batch_size, prompt_format=prompt_format
    )
    face, face_last, other = [], [], []
    for ref, (answer, nll) in zip(refs, scored, strict=True):
        mask = face_token_mask(tokenizer, answer, ref["face_numbers"])
        for k, (is_face, value) in enumerate(zip(mask, nll, strict=True)):
            (face if is_face else other).append(value)
            if is_face and not (k + 1 < len(mask) and mask[k + 1]):  # two numbers never touch
                face_last.append(value)

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "all": mean(face + other),
        "face": mean(face),
        "face_last": mean(face_last),
        "other": mean(other),
        "face_tokens": len(face),
        "face_numbers": len(face_last),
        "other_tokens": len(other),
    }


# ----------------------------------------------------------------------------- model-level API


GenerateIds = Callable[..., list[list[list[int]]]]


def hf_generate_ids(
    model, tokenizer, *, batch_size: int, progress: bool, prompt_format: str
) -> GenerateIds:
    """The `hf` backend: ``generate_token_ids`` on a loaded model, as a ``GenerateIds``
    (``(prompts, *, max_new_tokens, temperature, n, seed, desc) -> ids``)."""

    def generate_ids(prompts, *, max_new_tokens, temperature, n, seed, desc):
        return generate_token_ids(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            n=n,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
            desc=desc,
            prompt_format=prompt_format,
        )

    return generate_ids


def _respond(
    generate_ids: GenerateIds, tokenizer, *, decoding: Mapping[str, Any], desc: str
) -> Respond:
    """A ``respond`` for ``multi_try_verify``: one answer per prompt, a fresh seed per call."""
    calls = {"count": 0}

    def respond(prompts: list[str]) -> list[str]:
        calls["count"] += 1
        out = generate_ids(
            prompts,
            max_new_tokens=int(decoding["max_new_tokens"]),
            temperature=float(decoding["temperature"]),
            n=1,
            seed=_mix_seed(int(decoding["seed"]), calls["count"]),
            desc=f"{desc} retry {calls['count']}",
        )
        return [_decode(tokenizer, c[0]) for c in out]

    return respond


def evaluate_rows(
    model,
    tokenizer,
    rows,
    *,
    decoding: Mapping[str, Any] | None = None,
    batch_size: int = 64,
    multi_try: Mapping[str, Any] | None = None,
    progress: bool = False,
    desc: str = "eval",
    reward_mode: str = "strict",
    prompt_format: str = "raw",
    generate_ids: GenerateIds | None = None,
) -> tuple[pd.DataFrame, int]:
    """Generate + score (+ multi-try) for in-memory rows; returns (predictions, generated tokens
    of the first attempt). Prompts are rendered by ``sftrl.chat`` in ``prompt_format``;
    ``generate_ids`` is the backend (default: ``hf_generate_ids`` on ``model``)."""
    dec = {**DEFAULT_PARAMS["decoding"], **(decoding or {})}
    mt = {**DEFAULT_PARAMS["multi_try"], **(multi_try or {})}
    records = _records(rows)
    if not records:
        return _frame([], multi=bool(mt["enabled"])), 0
    if generate_ids is None:
        generate_ids = hf_generate_ids(
            model, tokenizer, batch_size=batch_size, progress=progress, prompt_format=prompt_format
        )

    def render(messages):
        return chat.render_prompt(tokenizer, messages, prompt_format)

    n = int(dec["n"])
    ids = generate_ids(
        [render([chat.user(str(r["prompt"]))]) for r in records],
        max_new_tokens=int(dec["max_new_tokens"]),
        temperature=float(dec["temperature"]),
        n=n,
        seed=int(dec["seed"]),
        desc=desc,
    )
    n_tokens = sum(len(t) for per_prompt in ids for t in per_prompt)
    completions = [[_decode(tokenizer, t) for t in per_prompt] for per_prompt in ids]
    if not mt["enabled"]:
        return score_items(records, completions, reward_mode=reward_mode), n_tokens

    units = [{**row, "item": row.get("item", i)} for i, row in enumerate(records) for _ in range(n)]
    df = multi_try_verify(
        _respond(generate_ids, tokenizer, decoding=dec, desc=desc),
        units,
        max_tries=int(mt["max_tries"]),
        first_completions=[c for per_prompt in completions for c in per_prompt],
        samples=[j for _ in records for j in range(n)],
        reward_mode=reward_mode,
        render=render,
    )
    return df, n_tokens


def reward_mean_at_1(
    model,
    tokenizer,
    rows,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    reward_mode: str = "strict",
    prompt_format: str = "raw",
) -> float:
    """mean@1: the mean reward of ONE answer per prompt (greedy, or sampled at ``temperature``).

    ``rows`` as for ``score_items`` (``prompt``, ``cards``, ``rule``). The model's train/eval
    mode is restored afterwards, so RL stages can call this between updates.
    """
    records = _records(rows)
    if not records:
        raise ValueError("reward_mean_at_1 needs at least one row")
    completions = generate(
        model,
        tokenizer,
        render_prompts(tokenizer, records, prompt_format),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        n=1,
        seed=seed,
        batch_size=batch_size,
        prompt_format=prompt_format,
    )
    scored = score_items(records, [c[0] for c in completions], reward_mode=reward_mode)
    return float(scored["reward"].mean())


def render_prompts(tokenizer, rows, prompt_format: str) -> list[str]:
    """Each row's ``prompt`` as a one-turn conversation in ``prompt_format`` (``sftrl.chat``)."""
    return [
        chat.render_prompt(tokenizer, [chat.user(str(r["prompt"]))], prompt_format)
        for r in _records(rows)
    ]


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The eval stage's params with defaults filled (nested dicts merged key by key)."""
    out = copy.deepcopy(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def evaluate_model(
    model_dir: str | Path,
    data_dir: str | Path,
    *,
    splits: Sequence[str] = SPLITS,
    decoding: Mapping[str, Any] | None = None,
    batch_size: int = 64,
    multi_try: Mapping[str, Any] | None = None,
    limit: int | None = None,
    device: str = "auto",
    dtype: str = "float32",
    progress: bool = True,
    reward_mode: str = "strict",
    prompt_format: str = "raw",
    backend: str = "hf",
    answer_format: str = "spaced",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate a saved HF model on ``data_dir/eval_<split>.parquet`` for each split.

    Each split is generated on its own (its results do not depend on the other splits listed);
    ``limit`` keeps the first ``limit`` rows of each split. Returns ``(summary, predictions)``:
    ``summary = {"splits": summarize(predictions), "decoding": ..., "multi_try": ...,
    "batch_size": ..., "limit": ..., "generated_tokens": {split: count}, "reference_nll":
    {split: reference_nll(...)}}`` (the face-token NLL probe; None with the vllm backend, which
    loads no model here).
    """
    from sftrl.modeling import load_model, load_tokenizer

    dec = {**DEFAULT_PARAMS["decoding"], **(decoding or {})}
    mt = {**DEFAULT_PARAMS["multi_try"], **(multi_try or {})}
    data_dir = Path(data_dir)
    tables = {}
    for split in splits:
        path = data_dir / f"eval_{split}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"no evaluation file for split {split!r}: {path}")
        table = pd.read_parquet(path)
        tables[split] = table.head(int(limit)) if limit is not None else table

    tokenizer = load_tokenizer(model_dir)
    model, generate_ids = None, None
    if backend == "vllm":  # the model is loaded by vLLM, not by transformers
        from sftrl.vllm_generation import vllm_generate_ids

        generate_ids = vllm_generate_ids(
            model_dir, tokenizer, dtype=dtype, prompt_format=prompt_format
        )
    else:
        model = load_model(model_dir, dtype=dtype, device=device)

    frames, tokens, nll = [], {}, {}
    for split, table in tables.items():
        if model is not None:
            nll[split] = reference_nll(
                model,
                tokenizer,
                table,
                answer_format=answer_format,
                batch_size=min(batch_size, 16),  # fp32 logits of a 150k vocabulary are big
                prompt_format=prompt_format,
            )
        rows = table.assign(split=split, item=np.arange(len(table)))
        df, tokens[split] = evaluate_rows(
            model,
            tokenizer,
            rows,
            decoding=dec,
            batch_size=batch_size,
            multi_try=mt,
            progress=progress,
            desc=split,
            reward_mode=reward_mode,
            prompt_format=prompt_format,
            generate_ids=generate_ids,
        )
        frames.append(df)
    predictions = (
        pd.concat(frames, ignore_index=True) if frames else _frame([], bool(mt["enabled"]))
    )
    summary = {
        "splits": summarize(predictions, max_tries=int(mt["max_tries"]) if mt["enabled"] else None),
        "decoding": dec,
        "multi_try": mt,
        "batch_size": int(batch_size),
        "limit": limit,
        "generated_tokens": tokens,
        "reference_nll": nll if model is not None else None,
    }
    return summary, predictions


# ----------------------------------------------------------------------------- stage


def run(spec: Mapping[str, Any]) -> None:
    """Eval stage: every checkpoint of one model artifact on every split.

    inputs: {"models": {checkpoint: HF dir}, "data": data artifact dir}; params: see
    ``DEFAULT_PARAMS``. Writes ``summary.json`` ({"models": {checkpoint: summary}}, in
    training order) and ``predictions.parquet`` (one row per checkpoint, item and sample).
    """
    from sftrl import store

    params = resolve_params(spec["params"])
    inputs = spec["inputs"]
    with store.open_artifact(spec) as art:
        started = time.perf_counter()
        summaries, frames, tokens = {}, [], 0
        for checkpoint, model_dir in inputs["models"].items():
            summary, predictions = evaluate_model(
                model_dir,
                inputs["data"],
                splits=params["splits"],
                decoding=params["decoding"],
                batch_size=int(params["batch_size"]),
                multi_try=params["multi_try"],
                limit=params["limit"],
                device=params["device"],
                dtype=params["dtype"],
                progress=True,
                reward_mode=params["reward_mode"],
                prompt_format=chat.prompt_format_of(params),
                backend=params.get("backend", "hf"),
                # the plan's copy of data.answer_format (the NLL probe's reference answers)
                answer_format=params.get("answer_format", "spaced"),
            )
            summaries[checkpoint] = summary
            frames.append(predictions.assign(checkpoint=checkpoint))
            tokens += sum(summary["generated_tokens"].values())
            # headline numbers go to the manifest (summary.json stays free of timings)
            for split, metrics in summary["splits"].items():
                art.summary[f"{checkpoint}/{split}_success"] = metrics["success"]["rate"]
        seconds = time.perf_counter() - started
        text = json.dumps({"models": summaries}, indent=2, sort_keys=False, allow_nan=False)
        (art.path / "summary.json").write_text(text + "\n", encoding="utf-8")
        pd.concat(frames, ignore_index=True).to_parquet(
            art.path / "predictions.parquet", index=False
        )
        art.summary["eval_seconds"] = round(seconds, 3)
        art.summary["tokens_per_s"] = round(tokens / seconds, 1) if seconds > 0 else None

"""PPO for a causal LM (our own actor-critic; TRL 1.16 has no PPOTrainer), after arXiv 2508.16546.

Actor = the causal LM. Critic = `ValueHead`, an MLP h -> h/4 -> h/8 -> 1 on the final hidden
state of the policy's own trunk (shared trunk: the value loss also moves the LM weights, as in
the paper's code). One rollout = one answer to one hand, sampled at `temperature` with a KV
cache; the reward (`sftrl.game.score`) arrives on the answer's last token.

Two granularities (param `granularity`):
- "sequence" (default, the paper's): the whole answer is ONE action. V(s0) is the value head on
  the last prompt token; the action log-prob is the sum of the answer's token log-probs, so the
  ratio and the clip (0.1) are per answer. With one graded attempt per episode, GAE reduces to
  A = r - V(s0) and the return is r (gamma/lambda only matter for multi-step episodes).
- "token": every generated token is an action. V(s_t) is the value head on the hidden state
  that predicts token t (t = 0: the last prompt token, the paper's placement), GAE runs over
  the tokens with the sparse terminal reward. Per token, gamma 0.9 discounts the start of a
  40-token answer by 0.9^40: use gamma 1.0 there.
Multi-turn episodes (param `max_tries`, default 1 = one graded attempt): as in the published
environment (verify_iter 5), an episode is up to `max_tries` attempts at one hand. After a
failed attempt the conversation grows by the answer (an assistant turn) and the verifier's
`render_feedback(answer, verdict.reason)` (a user turn), rendered by `sftrl.chat` exactly as
`sftrl.evaluate.multi_try_verify` renders its 5-try transcripts, and the next attempt answers
that whole context; an episode stops at its first success. Each attempt is one action
("sequence" granularity only) with its own reward; V is the value head at the last token of the
attempt's context; GAE runs over the attempts of an episode (gamma, lam; the last attempt is
terminal). The reference environment also gives one more step past the budget a reward of -1
(truncated); here the episode ends after its last graded attempt. `rollout_batch_size` counts
episodes; minibatches are the attempts of a rollout, shuffled, in `rollout_batch_size //
minibatch_size` parts per epoch (the number of optimizer steps per update stays fixed).

Two options of the reference code (RL_Heals_SFT rl/trainer), off by default here and ON in the
paper presets (configs/paper-*.yaml), which follow the published code:
- `pre_formula_weight` (code: generation_config.thought_prob_coef 0.5, "legacy value from
  RL4VLM"): the action log-prob is w * (log-prob of the answer tokens before its "formula"
  key) + (log-prob of the tokens from that key on). 1.0 = off (the plain sum). An answer
  without the key keeps weight 1 everywhere (the code falls back to its last 4 tokens).
- `max_ratio` (code: rl/trainer/algo/ppo.py, always on at 10): a sample whose policy ratio
  exceeds it keeps only the clipped surrogate, whose gradient is zero there, so it adds no
  policy gradient (its value loss stays). The code applies it per minibatch of one sample;
  here per step. None = off.
Log-probs, entropy and KL are those of the temperature-scaled policy that generated the data.
KL to the start policy is the k3 estimator exp(d) - d - 1, d = logp_ref - logp, on the rollout
tokens (always measured; a penalty only when kl_coef > 0). Entropy bonus off by default.

Runs on the engine of `sftrl.train.engine` (DDP or DeepSpeed ZeRO through accelerate): the
policy is loaded after the Accelerator exists, on its device; policy and value head are one
prepared module; optimizer, scheduler, clipping and accumulation go through the accelerator.
Stage entry: `python -m sftrl.jobs --spec ...` (plain python or `accelerate launch`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sftrl import chat
from sftrl.generation import greedy, left_pad, position_ids, sample_tokens
from sftrl.train import engine, resume, rl_common
from sftrl.train.common import Progress, append_jsonl, defaults, read_jsonl, stage_params


@dataclass(frozen=True)
class PPOParams:
    """The PPO stage's parameters (config `rl.ppo`; the schema holds the same defaults)."""

    steps: int = 100  # PPO iterations (one rollout batch + its learning epochs)
    rollout_batch_size: int = 64  # hands (episodes) per step
    minibatch_size: int = 16  # episodes per optimizer step
    micro_batch_size: int = 16  # episodes per forward pass (gradient accumulation)
    ppo_epochs: int = 4
    granularity: str = "sequence"  # "sequence" (paper) | "token"
    gamma: float = 0.9
    lam: float = 0.95
    clip: float = 0.1  # policy ratio clip
    value_clip: float = 0.1  # value clip (paper: same 0.1)
    vf_coef: float = 0.5
    kl_coef: float = 0.0  # KL-to-start penalty (paper: none)
    entropy_coef: float = 0.0  # entropy bonus (paper: none)
    track_kl: bool = True  # keep a frozen start copy to measure KL even without penalty
    lr: float = 2e-5  # paper: 1e-6 at 7-11B; tiny models need more
    value_lr: float | None = None  # None = lr
    lr_schedule: str = "cosine"  # "cosine" | "constant"
    lr_schedule_unit: str = "optimizer_step"  # "optimizer_step" | "update" (paper code: per update)
    min_lr: float = 0.0  # cosine floor (paper code: 1e-9)
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    adam_eps: float = 1e-8  # torch's default (paper code: 1e-7)
    max_grad_norm: float = 1.0  # paper: 0.01
    temperature: float = 0.2  # rollout temperature (paper)
    max_new_tokens: int = 56  # SFT answers are ~41 tokens with EOS
    reward: str = "published"  # "published" | "success"
    reward_mode: str = "strict"  # config reward.mode: "strict" | "published"
    prompt_format: str = "raw"  # config model.prompt_format (sftrl.chat)
    whiten_rewards: bool = False  # standardise rewards over the rollout batch
    whiten_advantages: bool = True
    save_every: int = 25  # step-<k>/ every K steps (and final/)
    sft_loss_every: int = 25  # SFT-loss probe every K steps (0: off)
    sft_loss_rows: int = 256
    sft_loss_batch_size: int = 64
    seed: int = 0
    max_tries: int = 1  # graded attempts per episode, with feedback turns (paper code: 5)
    pre_formula_weight: float = 1.0  # weight of answer tokens before "formula" (code: 0.5)
    max_ratio: float | None = None  # drop the policy gradient of steps over it (code: 10)


DEFAULT_PARAMS: dict = defaults(PPOParams)


# ----------------------------------------------------------------------------- critic


class ValueHead(nn.Module):
    """MLP h -> h/4 -> h/8 -> 1 (ReLU). The last layer starts at zero, so V starts at 0."""

    def __init__(self, hidden_size: int):
        super().__init__()
        h4, h8 = max(1, hidden_size // 4), max(1, hidden_size // 8)
        self.net = nn.Sequential(
            nn.Linear(hidden_size, h4), nn.ReLU(), nn.Linear(h4, h8), nn.ReLU(), nn.Linear(h8, 1)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.float()).squeeze(-1)


class ActorCritic(nn.Module):
    """Policy + value head in one module (one DDP wrapper under `accelerate launch`)."""

    def __init__(self, policy, value_head: ValueHead):
        super().__init__()
        self.policy, self.value_head = policy, value_head

    def forward(self, input_ids, attention_mask, n_prompt: int, temperature: float):
        return token_stats(
            self.policy, self.value_head, input_ids, attention_mask, n_prompt, temperature
        )


def token_stats(policy, value_head, input_ids, attention_mask, n_prompt: int, temperature: float):
    """Per completion token t: log-prob of token t, entropy, and V(state before t) (None
    without a value head). Position P-1+t holds the state that predicts token t, so t = 0 is
    the last prompt token (always at P-1: prompts are left-padded)."""
    n_completion = input_ids.shape[1] - n_prompt
    out = policy(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        output_hidden_states=value_head is not None,
        logits_to_keep=n_completion + 1,
    )
    logits = out.logits[:, :-1].float() / temperature  # positions P-1 .. P+T-2
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, input_ids[:, n_prompt:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = None
    if value_head is not None:
        values = value_head(out.hidden_states[-1][:, n_prompt - 1 : -1])  # same positions
    return logp, entropy, values


# ----------------------------------------------------------------------------- pure pieces


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over [B, T] steps (right-padded; mask 1 on real steps).
    The step after the last real one is terminal (value 0). Returns (advantages, returns)."""
    mask = mask.float()
    adv = torch.zeros_like(values, dtype=torch.float)
    carry = torch.zeros(values.shape[0], dtype=torch.float, device=values.device)
    n_steps = values.shape[1]
    for t in reversed(range(n_steps)):
        alive = mask[:, t + 1] if t + 1 < n_steps else torch.zeros_like(carry)
        next_value = values[:, t + 1] * alive if t + 1 < n_steps else torch.zeros_like(carry)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        carry = (delta + gamma * lam * alive * carry) * mask[:, t]
        adv[:, t] = carry
    return adv, (adv + values) * mask


def policy_loss(logp_new, logp_old, adv, mask, clip: float, max_ratio: float | None = None):
    """Clipped surrogate, masked mean: max(-A r, -A clip(r, 1-c, 1+c)). Returns (loss, clipfrac).
    `max_ratio` (the reference's rule): a step with r > max_ratio keeps only the clipped term,
    -A clip(r), a constant there: it adds no gradient."""
    ratio = torch.exp(logp_new - logp_old)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip, 1.0 + clip)
    per_step = torch.maximum(unclipped, clipped)
    if max_ratio is not None:
        per_step = torch.where(ratio.detach() > max_ratio, clipped, per_step)
    loss = masked_mean(per_step, mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_frac.detach()


def value_loss(v_new, v_old, returns, mask, clip: float):
    """Clipped value loss 0.5 * max((v - R)^2, (v_old + clip(v - v_old) - R)^2), masked mean.
    Returns (loss, fraction of steps where the clipped term won)."""
    v_clipped = v_old + (v_new - v_old).clamp(-clip, clip)
    unclipped, clipped = (v_new - returns) ** 2, (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask).detach()


def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) on samples of pi: exp(d) - d - 1 >= 0."""
    d = logp_ref - logp
    return torch.exp(d) - d - 1.0


def to_steps(logp, values, completion_mask, granularity: str, weights=None):
    """Token tensors [B, T] -> RL steps: per token, or one step per answer ([B, 1]: summed
    log-prob, V(s0) = value at the last prompt token). `weights` [B, T] (sequence only): the
    answer's log-prob is the weighted sum (None: the completion mask, a plain sum). Returns
    (logp, values, step_mask)."""
    if granularity == "token":
        return logp, values, completion_mask.float()
    if granularity == "sequence":
        w = completion_mask if weights is None else weights
        seq_logp = (logp * w).sum(-1, keepdim=True)
        return seq_logp, values[:, :1], torch.ones_like(seq_logp)
    raise ValueError(f"granularity must be 'sequence' or 'token', got {granularity!r}")


def episode_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    episode: torch.Tensor,
    attempt: torch.Tensor,
    n_episodes: int,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the attempts of each episode: attempt k of episode e is step k of row e
    (rewards, values, episode, attempt: [N] per attempt; an episode's attempts are 0..K_e-1 and
    its last one is terminal). Returns (advantages, returns) per attempt, [N, 1]."""
    n_steps = int(attempt.max().item()) + 1 if len(attempt) else 1
    shape = (n_episodes, n_steps)
    grid_r = torch.zeros(shape, dtype=torch.float, device=values.device)
    grid_v = torch.zeros(shape, dtype=torch.float, device=values.device)
    grid_m = torch.zeros(shape, dtype=torch.float, device=values.device)
    grid_r[episode, attempt] = rewards.float()
    grid_v[episode, attempt] = values.float()
    grid_m[episode, attempt] = 1.0
    adv, ret = gae(grid_r, grid_v, grid_m, gamma, lam)
    return adv[episode, attempt][:, None], ret[episode, attempt][:, None]


FORMULA_KEY = '"formula"'


def pre_formula_mask(tokenizer, tokens: torch.Tensor, completion_mask: torch.Tensor):
    """[B, T] bool: the answer tokens before the one that starts its "formula" key (found in
    the decoded text; the first token whose decoded prefix reaches into the key opens the
    formula part). An answer without the key: all False."""
    out = torch.zeros_like(completion_mask, dtype=torch.bool)
    for row, (ids, mask) in enumerate(zip(tokens.tolist(), completion_mask.tolist(), strict=True)):
        ids = ids[: int(sum(mask))]
        text = _decode(tokenizer, ids)
        where = text.find(FORMULA_KEY)
        if where < 0:
            continue
        lo, hi = 0, len(ids)  # the smallest k whose decoded prefix is longer than `where`
        while lo < hi:
            mid = (lo + hi) // 2
            if len(_decode(tokenizer, ids[: mid + 1])) > where:
                hi = mid
            else:
                lo = mid + 1
        out[row, :lo] = True
    return out


def log_prob_weights(completion_mask, pre_formula, weight: float):
    """Per-token weights of the answer's log-prob: `weight` before the formula, 1 after (the
    completion mask itself when weight is 1 or no mask was made)."""
    if pre_formula is None or weight == 1.0:
        return completion_mask
    return completion_mask * torch.where(pre_formula, weight, 1.0).to(completion_mask.dtype)


def step_rewards(rewards: torch.Tensor, completion_mask: torch.Tensor, granularity: str):
    """Sparse rewards: on the answer's last token (token) or on the one step (sequence)."""
    if granularity == "sequence":
        return rewards[:, None].float()
    out = torch.zeros_like(completion_mask, dtype=torch.float)
    last = completion_mask.long().sum(-1).clamp(min=1) - 1
    out[torch.arange(len(rewards)), last] = rewards.float()
    return out * completion_mask


def lr_factor(step: int, total: int, warmup: int, schedule: str, floor: float = 0.0) -> float:
    """Linear warmup over `warmup` steps, then constant or cosine decay to `floor` (a fraction
    of the lr) at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {schedule!r}")
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------- rollout


@dataclass
class Rollout:
    """One row per attempt (one per episode when max_tries is 1), attempts of round 1 first."""

    input_ids: torch.Tensor  # [N, P+T]: left-padded context, right-padded completion
    attention_mask: torch.Tensor  # [N, P+T]: context tokens and completion up to EOS
    completion_mask: torch.Tensor  # [N, T]: 1 up to and including the first EOS
    n_prompt: int
    texts: list[str]
    rewards: torch.Tensor  # [N]
    successes: torch.Tensor  # [N] bool
    episode: torch.Tensor | None = None  # [N] long: the episode (row of `rows`) of each attempt
    attempt: torch.Tensor | None = None  # [N] long: 0-based attempt number
    n_episodes: int | None = None
    contexts: list[str] | None = None  # [N] the rendered text each attempt answered
    pre_formula: torch.Tensor | None = None  # [N, T] bool, when asked for (pre_formula_mask)

    def __post_init__(self):
        n = self.input_ids.shape[0]
        device = self.input_ids.device
        if self.episode is None:
            self.episode = torch.arange(n, device=device)
        if self.attempt is None:
            self.attempt = torch.zeros(n, dtype=torch.long, device=device)
        if self.n_episodes is None:
            self.n_episodes = n

    def episode_stats(self) -> dict[str, torch.Tensor]:
        """Per episode [E]: first-attempt reward and success, solved in any attempt, tries,
        the sum of its attempts' rewards."""
        e, dev = self.n_episodes, self.rewards.device
        first = self.attempt == 0
        order = torch.argsort(self.episode[first])
        tries = torch.zeros(e, device=dev).index_add_(
            0, self.episode, torch.ones_like(self.rewards)
        )
        solved = torch.zeros(e, device=dev).index_add_(0, self.episode, self.successes.float())
        total = torch.zeros(e, device=dev).index_add_(0, self.episode, self.rewards.float())
        return {
            "reward_1": self.rewards[first][order],
            "success_1": self.successes[first][order].float(),
            "success_any": (solved > 0).float(),
            "tries": tries,
            "return": total,
        }


def _decode(tokenizer, ids) -> str:
    """Answer text as evaluation decodes it (special tokens skipped, no space clean-up)."""
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def multinomial(temperature: float, generator: torch.Generator | None = None):
    """PPO's token draw: `torch.multinomial` on softmax(logits / T) with one generator for the
    batch (temperature 0: greedy)."""
    if temperature <= 0:
        return greedy

    def pick(logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return pick


def sample(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator | None = None,
):
    """Sample completions of left-padded prompts with the KV cache (temperature 0: greedy).
    Returns (tokens [B, T], completion_mask [B, T]: 1 up to and including the first EOS)."""
    tokens = sample_tokens(
        model,
        prompt_ids,
        prompt_mask,
        max_new_tokens=max_new_tokens,
        pad_id=pad_id,
        eos_ids=[eos_id],
        pick=multinomial(temperature, generator),
    )
    is_eos = (tokens == eos_id).long()
    return tokens, ((is_eos.cumsum(-1) - is_eos) == 0).long()


# reward_fn(texts, rows) -> (rewards, successes) or (rewards, successes, reasons): the reasons
# (the verdict's, `sftrl.game.score`) make the feedback turns of multi-turn episodes
RewardFn = Callable[[list[str], list[dict]], tuple]


def _pad_to(x: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
    extra = width - x.shape[1]
    if extra == 0:
        return x
    pad = torch.full((x.shape[0], extra), value, dtype=x.dtype, device=x.device)
    return torch.cat([pad, x] if left else [x, pad], dim=1)


def rollout(
    model,
    tokenizer,
    rows: Sequence[dict],
    reward_fn: RewardFn,
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator | None = None,
    prompt_format: str = "raw",
    max_tries: int = 1,
    mark_formula: bool = False,
) -> Rollout:
    """Episodes of up to `max_tries` attempts at every row's prompt, scored by
    `reward_fn(texts, rows)`. Attempt k+1 of an unsolved episode answers the conversation
    prompt, answer 1, feedback 1, ..., answer k, feedback k (feedback = `render_feedback(answer,
    reason)`, rendered by `sftrl.chat` as evaluation's multi-try does). `mark_formula`: also
    mark the answer tokens before the formula key (`pre_formula_mask`)."""
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    from sftrl.game import render_feedback

    device = next(model.parameters()).device
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    rows = list(rows)
    conversations = [[chat.user(r["prompt"])] for r in rows]
    pending = list(range(len(rows)))
    rounds = []
    for attempt in range(max_tries):
        if not pending:
            break
        # prompt rendering (models, #11): the same ids as evaluation and SFT give this context
        contexts = [chat.render_prompt(tokenizer, conversations[i], prompt_format) for i in pending]
        encoded = [chat.encode_text(tokenizer, c, prompt_format) for c in contexts]
        prompt_ids, prompt_mask, _ = left_pad(encoded, pad_id)
        prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
        tokens, completion_mask = sample(
            model,
            prompt_ids,
            prompt_mask,
            tokenizer.eos_token_id,
            pad_id,
            max_new_tokens,
            temperature,
            generator,
        )
        texts = [
            _decode(tokenizer, t[m.bool()].tolist())
            for t, m in zip(tokens.cpu(), completion_mask.cpu(), strict=True)
        ]
        scored = reward_fn(texts, [rows[i] for i in pending])
        rewards, successes = scored[0], scored[1]
        rounds.append(
            dict(
                episode=list(pending),
                attempt=attempt,
                prompt_ids=prompt_ids,
                prompt_mask=prompt_mask,
                tokens=tokens,
                completion_mask=completion_mask,
                texts=texts,
                contexts=contexts,
                rewards=list(rewards),
                successes=list(successes),
            )
        )
        if attempt + 1 == max_tries:
            break
        if len(scored) < 3:
            raise ValueError("max_tries > 1 needs a reward_fn that returns the verdicts' reasons")
        still = []
        for i, text, ok, reason in zip(pending, texts, successes, scored[2], strict=True):
            if not ok:
                conversations[i] = conversations[i] + [
                    chat.assistant(text),
                    chat.user(render_feedback(text, reason)),
                ]
                still.append(i)
        pending = still
    n_prompt = max(r["prompt_ids"].shape[1] for r in rounds)
    n_new = max(r["tokens"].shape[1] for r in rounds)

    def cat(key: str, width: int, value: int, left: bool) -> torch.Tensor:
        return torch.cat([_pad_to(r[key], width, value, left) for r in rounds])

    prompt_ids = cat("prompt_ids", n_prompt, pad_id, True)
    prompt_mask = cat("prompt_mask", n_prompt, 0, True)
    tokens = cat("tokens", n_new, pad_id, False)
    completion_mask = cat("completion_mask", n_new, 0, False)
    episode = [i for r in rounds for i in r["episode"]]
    return Rollout(
        input_ids=torch.cat([prompt_ids, tokens], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
        completion_mask=completion_mask,
        n_prompt=n_prompt,
        texts=[t for r in rounds for t in r["texts"]],
        rewards=torch.tensor(
            [x for r in rounds for x in r["rewards"]], dtype=torch.float, device=device
        ),
        successes=torch.tensor(
            [bool(x) for r in rounds for x in r["successes"]], dtype=torch.bool, device=device
        ),
        episode=torch.tensor(episode, dtype=torch.long, device=device),
        attempt=torch.tensor(
            [r["attempt"] for r in rounds for _ in r["episode"]], dtype=torch.long, device=device
        ),
        n_episodes=len(rows),
        contexts=[c for r in rounds for c in r["contexts"]],
        pre_formula=pre_formula_mask(tokenizer, tokens, completion_mask) if mark_formula else None,
    )


# ----------------------------------------------------------------------------- learning


@torch.no_grad()
def make_experience(actor_critic, roll: Rollout, p: dict, ref_policy=None) -> dict:
    """Old log-probs and values, advantages and returns (plus KL/entropy of the rollout).
    Forward passes run in chunks of `micro_batch_size` episodes."""
    size = p.micro_batch_size
    chunks = [
        (
            roll.input_ids[i : i + size],
            roll.attention_mask[i : i + size],
            roll.n_prompt,
            p.temperature,
        )
        for i in range(0, roll.input_ids.shape[0], size)
    ]
    logp, entropy, values = (
        torch.cat(parts) for parts in zip(*(actor_critic(*c) for c in chunks), strict=True)
    )
    cmask = roll.completion_mask.float()
    exp = {"logp_token": logp, "cmask": cmask, "entropy": masked_mean(entropy, cmask).item()}
    if ref_policy is not None:
        ref_logp = torch.cat([token_stats(ref_policy, None, *c)[0] for c in chunks])
        exp["ref_logp"] = ref_logp
        exp["kl_start"] = masked_mean(kl_k3(logp, ref_logp), cmask).item()
    g = p.granularity
    weights = log_prob_weights(cmask, roll.pre_formula, p.pre_formula_weight)
    exp["weights"] = weights
    step_logp, step_values, smask = to_steps(logp, values, cmask, g, weights)
    rewards = roll.rewards
    if p.whiten_rewards and len(rewards) > 1:
        rewards = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
    if g == "sequence":  # GAE over each episode's attempts (one attempt: A = r - V)
        adv, returns = episode_gae(
            rewards,
            step_values[:, 0],
            roll.episode,
            roll.attempt,
            roll.n_episodes,
            p.gamma,
            p.lam,
        )
    else:
        if roll.input_ids.shape[0] != roll.n_episodes:
            raise ValueError("multi-attempt episodes (max_tries > 1) need granularity 'sequence'")
        adv, returns = gae(step_rewards(rewards, cmask, g), step_values, smask, p.gamma, p.lam)
    if p.whiten_advantages:
        adv = whiten(adv, smask)
    exp.update(logp=step_logp, values=step_values, smask=smask, adv=adv, returns=returns)
    return exp


def ppo_update(actor_critic, optimizer, scheduler, roll: Rollout, exp: dict, p, acc, step: int):
    """`ppo_epochs` passes over the rollout in shuffled minibatches (order seeded by seed and
    step). Each minibatch accumulates its micro-batches through `acc` (its
    gradient_accumulation_steps = micro-batches per minibatch: DDP syncs, DeepSpeed steps once);
    clipped gradients, one optimizer and scheduler step per minibatch. Returns mean metrics."""
    n = roll.input_ids.shape[0]  # attempts
    n_ep = roll.n_episodes if roll.n_episodes is not None else n
    mb, micro = min(p.minibatch_size, n_ep), min(p.micro_batch_size, p.minibatch_size, n_ep)
    n_micro = math.ceil(mb / micro)  # == acc.gradient_accumulation_steps
    gen = torch.Generator().manual_seed(int(p.seed) * 1_000_003 + step)
    sums: dict[str, float] = {}
    n_steps = 0
    for _ in range(p.ppo_epochs):
        order = torch.randperm(n, generator=gen)
        if n == n_ep:  # one attempt per episode: minibatches of mb, micro-batches of micro
            batches = [order[s : s + mb] for s in range(0, n - mb + 1, mb)]
        else:  # the same number of minibatches and micro-batches, over all attempts
            batches = list(torch.tensor_split(order, n_ep // mb))
        for batch in batches:
            if n == n_ep:
                parts = [batch[m0 : m0 + micro] for m0 in range(0, mb, micro)]
            else:
                parts = list(torch.tensor_split(batch, n_micro))
            size = len(batch)
            for part in parts:
                idx = part.to(roll.input_ids.device)
                with acc.accumulate(actor_critic):
                    # acc.backward divides by n_micro: weight the micro-batch by its share
                    scale = len(idx) / size * n_micro
                    stats = _micro_loss(actor_critic, roll, exp, idx, p, scale, acc)
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + v * len(idx) / size
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(actor_critic.parameters(), p.max_grad_norm)
                    optimizer.step()
                    if acc.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            if grad_norm is None:  # DeepSpeed clips inside its step
                grad_norm = actor_critic.get_global_grad_norm()
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm)
            n_steps += 1
    return {k: v / max(n_steps, 1) for k, v in sums.items()}


def _micro_loss(
    actor_critic, roll: Rollout, exp: dict, idx, p: dict, weight: float, accelerator
) -> dict:
    logp, entropy, values = actor_critic(
        roll.input_ids[idx], roll.attention_mask[idx], roll.n_prompt, p.temperature
    )
    cmask = exp["cmask"][idx]
    step_logp, step_values, smask = to_steps(
        logp, values, cmask, p.granularity, exp["weights"][idx]
    )
    pg, clip_frac = policy_loss(
        step_logp, exp["logp"][idx], exp["adv"][idx], smask, p.clip, p.max_ratio
    )
    vf, vclip_frac = value_loss(
        step_values, exp["values"][idx], exp["returns"][idx], smask, p.value_clip
    )
    ent = masked_mean(entropy, cmask)
    loss = pg + p.vf_coef * vf - p.entropy_coef * ent
    if p.kl_coef > 0:
        loss = loss + p.kl_coef * masked_mean(kl_k3(logp, exp["ref_logp"][idx]), cmask)
    accelerator.backward(loss * weight)
    approx_kl = masked_mean(exp["logp_token"][idx] - logp.detach(), cmask)  # old || new, k1
    stats = {
        "policy_loss": pg.item(),
        "value_loss": vf.item(),
        "clip_frac": clip_frac.item(),
        "value_clip_frac": vclip_frac.item(),
        "approx_kl_old": approx_kl.item(),
    }
    if p.max_ratio is not None:  # share of steps whose policy gradient the rule dropped
        ratio = torch.exp(step_logp.detach() - exp["logp"][idx])
        stats["ratio_drop_frac"] = masked_mean((ratio > p.max_ratio).float(), smask).item()
    return stats


# ----------------------------------------------------------------------------- training loop


def build_optimizer(
    actor_critic: ActorCritic,
    p,
    total_steps: int,
    dist: engine.Distributed,
    steps_per_update: int = 1,
):
    groups = [
        {"params": [q for q in actor_critic.policy.parameters() if q.requires_grad], "lr": p.lr},
        {
            "params": list(actor_critic.value_head.parameters()),
            "lr": p.value_lr if p.value_lr is not None else p.lr,
        },
    ]
    if dist.offload_optimizer:  # ZeRO offload steps on the CPU: DeepSpeed's CPU AdamW
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(
            groups, weight_decay=p.weight_decay, eps=p.adam_eps, adamw_mode=True
        )
    else:
        optimizer = torch.optim.AdamW(groups, weight_decay=p.weight_decay, eps=p.adam_eps)
    # the schedule advances every optimizer step, or once per PPO update (the paper's code)
    per = steps_per_update if p.lr_schedule_unit == "update" else 1
    total = total_steps // per
    warmup = int(round(p.warmup_ratio * total))
    floors = [p.min_lr / g["lr"] if g["lr"] > 0 else 0.0 for g in groups]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        [lambda s, f=f: lr_factor(s // per, total, warmup, p.lr_schedule, f) for f in floors],
    )
    return optimizer, scheduler


def check_params(p) -> None:
    """Combinations the PPO loop does not run (ValueError naming the params)."""
    if p.max_tries < 1:
        raise ValueError(f"rl.ppo.max_tries must be >= 1, got {p.max_tries}")
    if p.granularity != "sequence" and (p.max_tries > 1 or p.pre_formula_weight != 1.0):
        raise ValueError(
            "rl.ppo.max_tries > 1 and rl.ppo.pre_formula_weight != 1 need rl.ppo.granularity "
            f"'sequence' (one action per attempt), got {p.granularity!r}"
        )
    if p.max_ratio is not None and p.max_ratio <= 1.0:
        raise ValueError(f"rl.ppo.max_ratio must be > 1 (or null), got {p.max_ratio}")


def micro_batches(p) -> tuple[int, int]:
    """(episodes per forward pass, forward passes per optimizer step)."""
    mb = min(p.minibatch_size, p.rollout_batch_size)
    micro = min(p.micro_batch_size, mb)
    return micro, math.ceil(mb / micro)


def make_accelerator(p, dist: engine.Distributed):
    micro, n_micro = micro_batches(p)
    return engine.accelerator(
        dist, micro_batch_size=micro, grad_accum=n_micro, max_grad_norm=p.max_grad_norm
    )


def train_ppo(
    policy,
    tokenizer,
    hands: Iterator[dict],
    reward_fn: RewardFn,
    params,
    out_dir: str | Path | None = None,
    on_checkpoint: Callable[[int, object], None] | None = None,
    accelerator=None,
    dist: engine.Distributed | None = None,
    reference=None,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """Run `steps` PPO iterations on hands drawn from `hands`. Writes `metrics.jsonl`,
    `step-<k>/`, `final/` and `value_head.safetensors` under out_dir (None: write nothing).
    `on_checkpoint(step, policy)` runs at step 0 and every `sft_loss_every` steps (the SFT-loss
    probe), on every process. Pass the `accelerator` the policy was loaded for (default: a new
    one) and, where a copy of the policy is no option (ZeRO-3 loads it sharded), the KL
    `reference`. With a `checkpointer`, in-job checkpoints (accelerate's `save_state`: weights,
    optimizer, scheduler, RNG states, plus the sampling generator) let a rerun resume."""
    p = stage_params(PPOParams, params)
    check_params(p)
    dist = dist or engine.Distributed()
    acc = accelerator or make_accelerator(p, dist)
    out = Path(out_dir) if out_dir is not None else None
    metrics_path = out / "metrics.jsonl" if out is not None else None

    torch.manual_seed(p.seed)  # value head init
    head = ValueHead(policy.config.hidden_size)
    ref = None
    if p.track_kl or p.kl_coef > 0:  # the start policy, at the policy's precision
        ref = reference if reference is not None else copy.deepcopy(policy)
        ref = engine.prepare_reference(acc, ref.eval().requires_grad_(False))
    minibatches = max(1, p.rollout_batch_size // min(p.minibatch_size, p.rollout_batch_size))
    per_update = p.ppo_epochs * minibatches
    optimizer, scheduler = build_optimizer(
        ActorCritic(policy, head), p, p.steps * per_update, dist, per_update
    )
    # one prepared module: the value head is wrapped (and sharded) with the policy
    actor_critic, optimizer, scheduler = acc.prepare(
        ActorCritic(policy, head), optimizer, scheduler
    )
    actor_critic.eval()  # dropout off throughout: old and new log-probs are the same function
    generator = torch.Generator(device=acc.device).manual_seed(
        int(p.seed) * 7919 + acc.process_index
    )
    done, saved = checkpointer.restore() if checkpointer is not None else (0, None)
    generator_file = f"sftrl_generator_{acc.process_index}.pt"
    if saved is not None:  # after the reference copy: that stays the start policy
        acc.load_state(str(saved))
        generator.set_state(torch.load(saved / generator_file))
        resume.skip(hands, done * p.rollout_batch_size * acc.num_processes)
    elif on_checkpoint is not None and p.sft_loss_every > 0:
        on_checkpoint(0, acc.unwrap_model(actor_critic).policy)  # the start model
    if checkpointer is not None:
        checkpointer.total = p.steps
    history = read_jsonl(metrics_path if done else None)
    progress = Progress("ppo", p.steps)
    for step in range(done + 1, p.steps + 1):
        t0 = time.perf_counter()
        # one global stream of hands: process k answers the k-th slice of each global batch
        batch = rl_common.take(hands, p.rollout_batch_size * acc.num_processes)
        rows = batch[acc.process_index * p.rollout_batch_size :][: p.rollout_batch_size]
        with engine.generation_model(acc, actor_critic, dist) as core, acc.autocast():
            roll = rollout(
                core.policy,
                tokenizer,
                rows,
                reward_fn,
                p.max_new_tokens,
                p.temperature,
                generator,
                p.prompt_format,
                max_tries=p.max_tries,
                mark_formula=p.pre_formula_weight != 1.0,
            )
        t1 = time.perf_counter()
        with acc.autocast():
            exp = make_experience(actor_critic, roll, p, ref)
        # activation checkpointing only acts in train mode (the models' dropout is 0)
        actor_critic.train(dist.activation_checkpointing)
        stats = ppo_update(actor_critic, optimizer, scheduler, roll, exp, p, acc, step)
        actor_critic.eval()
        t2 = time.perf_counter()
        # per episode (equal counts on every process): the first attempt's reward and success
        episodes = {k: acc.gather(v) for k, v in roll.episode_stats().items()}
        rewards, successes = episodes["reward_1"], episodes["success_1"]
        local = {
            "entropy": exp["entropy"],
            "kl_start": exp.get("kl_start"),
            "completion_tokens": roll.completion_mask.float().sum(-1).mean().item(),
            **stats,
        }
        record = {
            "step": step,
            "episodes": step * p.rollout_batch_size * acc.num_processes,
            "reward": rewards.mean().item(),
            "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
            "success": successes.mean().item(),
            "lr": scheduler.get_last_lr()[0],
            "reward_kind": p.reward,
            "seconds_rollout": round(t1 - t0, 4),
            "seconds_learn": round(t2 - t1, 4),
            **mean_over_processes(acc, local),
        }
        if p.max_tries > 1:  # multi-turn episodes: attempts, success at 1 and at max_tries
            record.update(
                attempts=int(episodes["tries"].sum().item()),
                tries_mean=episodes["tries"].mean().item(),
                success_at_1=successes.mean().item(),
                success_at_max=episodes["success_any"].mean().item(),
                episode_return=episodes["return"].mean().item(),
            )
        history.append(record)
        if acc.is_main_process:
            append_jsonl(metrics_path, record)
            progress(step, reward=record["reward"], success=record["success"])
        if rl_common.is_due(step, p.save_every, p.steps) and step != p.steps:
            _save(acc, actor_critic, tokenizer, out, step, dist)
        if (
            on_checkpoint is not None
            and p.sft_loss_every > 0
            and rl_common.is_due(step, p.sft_loss_every, p.steps)
        ):
            on_checkpoint(step, acc.unwrap_model(actor_critic).policy)
        if checkpointer is not None and step < p.steps and checkpointer.due(step):
            acc.save_state(str(checkpointer.path(step)))  # every process: shards, RNG states
            torch.save(generator.get_state(), checkpointer.path(step) / generator_file)
            checkpointer.commit(step)
            checkpointer.stop_if_requested()
    _save(acc, actor_critic, tokenizer, out, None, dist, value_head=True)
    return _summary(history, p)


def mean_over_processes(acc, metrics: dict) -> dict:
    """Per-process scalars averaged over the processes (equal batches: the global mean)."""
    if acc.num_processes == 1:
        return metrics
    out = {}
    for key, value in metrics.items():
        if value is not None:
            value = acc.reduce(torch.tensor(float(value), device=acc.device), "mean").item()
        out[key] = value
    return out


def _save(acc, actor_critic, tokenizer, out, step, dist, value_head: bool = False) -> None:
    """`step-<k>/` or `final/` (policy only) and, at the end, `value_head.safetensors`; every
    process calls (a ZeRO-3 gather), the main one writes."""
    path = out / rl_common.checkpoint_name(step) if out is not None else None
    state = engine.full_state_dict(acc, actor_critic, dist)
    policy_state = head_state = None
    if state is not None:
        policy_state = {k[7:]: v for k, v in state.items() if k.startswith("policy.")}
        head_state = {k[11:]: v for k, v in state.items() if k.startswith("value_head.")}
    core = acc.unwrap_model(actor_critic)
    if acc.is_main_process and path is not None:
        from safetensors.torch import save_file

        from sftrl.modeling import save_model

        save_model(core.policy, tokenizer, path, dtype=dist.save_dtype, state_dict=policy_state)
        core.eval()
        if value_head:
            head_state = head_state or core.value_head.state_dict()
            save_file(
                {k: v.contiguous().cpu() for k, v in head_state.items()},
                str(out / "value_head.safetensors"),
            )
    acc.wait_for_everyone()


def _summary(history: list[dict], p) -> dict:
    return rl_common.run_summary(
        history, algorithm="ppo", granularity=p.granularity, reward_kind=p.reward
    )


# ----------------------------------------------------------------------------- stage


def train_from_dirs(
    start_model: str | Path,
    data_dir: str | Path,
    params: dict,
    out_dir: Path | None,
    base_model: str | Path | None = None,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """Create the engine, load the start checkpoint on its device, attach the SFT-loss probe,
    train (resuming from `checkpointer`'s newest checkpoint when there is one)."""
    from sftrl.modeling import load_model, load_tokenizer, set_seed_everywhere

    resumed = checkpointer is not None and checkpointer.restore()[0] > 0  # before any write
    p, dist = stage_params(PPOParams, params), engine.distributed(params)
    acc = make_accelerator(p, dist)  # before any weight is placed (one device per process)
    set_seed_everywhere(p.seed)
    engine.set_determinism(dist, p.seed)
    tokenizer = load_tokenizer(start_model)
    dtype = engine.master_dtype(dist, engine.model_dtype(params))
    policy = load_model(start_model, dtype=dtype, device=str(acc.device))
    reference = None
    if dist.deepspeed and dist.zero_stage == 3 and (p.track_kl or p.kl_coef > 0):
        reference = load_model(start_model, dtype=dtype, device=str(acc.device))
    engine.set_activation_checkpointing(policy, dist)
    hands = rl_common.cycle_rows(rl_common.rl_rows(data_dir), f"{p.seed}:0")  # one global stream

    def reward_fn(texts, rows):  # with the verdicts' reasons: the feedback of multi-turn episodes
        return rl_common.score_batch(texts, rows, p.reward, p.reward_mode, with_reasons=True)

    probe, on_checkpoint = rl_common.sft_loss_probe(
        data_dir, out_dir, p, tokenizer, base_model, resumed
    )
    summary = train_ppo(
        policy,
        tokenizer,
        hands,
        reward_fn,
        p,
        out_dir,
        on_checkpoint,
        acc,
        dist,
        reference,
        checkpointer,
    )
    return {**summary, **rl_common.probe_summary(probe), **engine.manifest_fields(dist)}


def run(spec: dict) -> None:
    rl_common.run_stage(spec, train_from_dirs)

"""The KV-cache sampling loop over a Hugging Face causal LM (evaluation and PPO rollouts).

Prompts are LEFT-padded with explicit position ids (0 at each prompt's first real token), so a
padded prompt sees exactly what it would see alone and its last token sits at column P-1. One
forward pass over the prompts fills the cache, then one token per step; a row stops at its first
EOS, the batch when every row has stopped or after `max_new_tokens`. How a token is drawn from
the logits is the caller's (`pick`): evaluation draws by inverse CDF with one generator per row,
PPO with `torch.multinomial`, greedy takes the arg-max.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Pick = Callable[[torch.Tensor], torch.Tensor]  # float logits [B, V] -> token ids [B]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counting only attended tokens (left padding shifts nothing)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token id lists to one tensor.

    Returns ``(input_ids, attention_mask, position_ids)``, each ``(batch, max_len)``: pads on the
    left with mask 0, and positions counting 0, 1, ... from each sequence's first real token (0 on
    the pads).
    """
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("left_pad needs at least one sequence and no empty sequence")
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
        attention_mask[row, width - len(seq) :] = 1
    return input_ids, attention_mask, position_ids(attention_mask)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1)


@torch.no_grad()
def sample_tokens(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    pad_id: int,
    eos_ids: Sequence[int],
    pick: Pick = greedy,
) -> torch.Tensor:
    """New tokens [B, T] (T <= max_new_tokens) for left-padded prompts already on the model's
    device; a row's tokens after its first EOS are `pad_id`. Empty [B, 0] for 0 new tokens."""
    batch, device = input_ids.shape[0], input_ids.device
    if max_new_tokens <= 0:
        return torch.empty((batch, 0), dtype=torch.long, device=device)
    eos = torch.as_tensor(list(eos_ids), dtype=torch.long, device=device)
    position = position_ids(attention_mask)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position,
        use_cache=True,
        logits_to_keep=1,
    )
    next_position = position[:, -1:] + 1
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    steps: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        token = pick(out.logits[:, -1, :].float()).masked_fill(finished, pad_id)
        steps.append(token)
        if eos.numel():
            finished |= torch.isin(token, eos)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=-1)
        out = model(
            input_ids=token[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        next_position = next_position + 1
    return torch.stack(steps, dim=1)

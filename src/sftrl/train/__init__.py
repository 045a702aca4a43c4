"""Training stages: pretrain (tiny model from scratch), sft, and the RL stages.

Each module exposes `run(spec)` (the job-spec contract in docs/architecture.md) plus reusable
functions (e.g. `sftrl.train.sft.train_sft`, `sftrl.train.sft.sft_loss`) for other stages.
"""

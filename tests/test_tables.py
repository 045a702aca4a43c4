"""The summary's effect-beside-control table (issue 13): per replicate, then over seeds."""

import math

import numpy as np
import pandas as pd

from sftrl.tables import NO_RL, contrasts, seed_interval, summary_markdown


def _tables() -> dict[str, pd.DataFrame]:
    layers = pd.DataFrame(
        [
            {"pair": "base -> sft epoch 4", "replicate": rep, "layer": layer, "module": "*",
             "mean_angle_u": 6.0 + rep, "null_mean_angle_u": 4.0, "rotation_share": 0.55,
             "null_share_rotation": 0.40, "scaling_share": 0.02, "null_share_scaling": 0.0,
             "sv_rel_mean_abs": 0.02}
            for rep in (1, 2, 3)
            for layer in (0, 1)
        ]
    )  # fmt: skip
    coupling = pd.DataFrame(
        [
            {"kind": "reward_during_sft", "algorithm": algo, "start_epoch": 4.0,
             "replicate": rep, "step": step, "value": start - drop * step,
             "ref_base": math.nan, "ref_start": math.nan}
            for rep in (1, 2, 3)
            for algo, start, drop in (("ppo", 3.5, 0.2), (NO_RL, 3.4, 0.1 * rep))
            for step in (0, 1, 2)
        ]
    )  # fmt: skip
    empty = pd.DataFrame()
    return {"evals": empty, "recovery": empty, "spectrum_layers": layers, "coupling": coupling}


def test_contrasts_pair_each_replicate_with_its_own_control():
    tables = _tables()
    pairs = contrasts(tables)
    angle = pairs[pairs["effect"].str.startswith("mean top-k angle")]
    assert list(angle["value"]) == [7.0, 8.0, 9.0] and set(angle["control_value"]) == {4.0}
    reward = pairs[pairs["effect"].str.startswith("RL reward change")].sort_values("replicate")
    # ppo drops 0.4 in every replicate; the no-RL twin drops 0.2, 0.4, 0.6 (its own seed)
    np.testing.assert_allclose(reward["value"], [-0.4, -0.4, -0.4])
    np.testing.assert_allclose(reward["control_value"], [-0.2, -0.4, -0.6])
    text = summary_markdown({**tables, "contrasts": pairs})
    assert "| 3 | 8.000 | 4.000 | +4.000 [" in text and "| 3 of 3 |" in text
    assert "| 1 of 3 |" in text  # ppo's drop is smaller than the control's in seed 3 only


def test_seed_interval_is_a_t_interval_and_undefined_for_one_seed():
    mean, low, high = seed_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and math.isclose(high - mean, 4.302653 / 3**0.5, rel_tol=1e-5)
    assert math.isclose(mean - low, high - mean)
    one = seed_interval(np.array([1.0]))
    assert one[0] == 1.0 and math.isnan(one[1]) and math.isnan(one[2])


def test_pooled_share_is_undefined_when_nothing_was_lost():
    from sftrl.tables import Collector

    c = Collector([], {})

    def hands(k: int) -> np.ndarray:
        return (np.arange(234) < k).astype(float)

    # the held-out case: recipient 7 and 5 hands, donor 8 and 4: equal means but for rounding
    c.outcomes = [
        (("rl", "ppo", 4.0, "ood"), hands(a), hands(r), hands(d))
        for a, r, d in ((2, 7, 8), (4, 5, 4))
    ]
    row = c.pooled().iloc[0]
    assert math.isnan(row["recovery"]) and math.isnan(row["recovery_low"])
    assert row["replicates"] == 2 and math.isclose(row["diff"], -3 / 234)
    assert "undefined (no loss to recover)" in summary_markdown(
        {"evals": pd.DataFrame(), "recovery": pd.DataFrame(), "pooled": c.pooled(),
         "spectrum_layers": pd.DataFrame(), "coupling": pd.DataFrame()}
    )  # fmt: skip

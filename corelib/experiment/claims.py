"""The claims C1-C3 read off the measured grid (Section 4)."""
from __future__ import annotations

import numpy as np
import pandas as pd

LOWER_IS_BETTER = {"MAE", "MSE", "RMSE"}


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per cell, task and metric, in the columns `report` expects."""
    out = (long.groupby(["cell", "data_size", "task", "metric"], sort=False)["value"]
           .agg(value="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan, seeds="size")
           .reset_index())
    out["lower_is_better"] = out["metric"].isin(LOWER_IS_BETTER)
    return out.rename(columns={"cell": "method"})

CLAIMS = {
    "C1": ("an influence-guided coreset beats random at the same budget", ["Top I", "CCI"], "Random"),
    "C2": ("it beats a random set 10x larger", ["Top I", "CCI"], "Random 10x"),
    "C3": ("fine-tuning before scoring beats w/o ft", ["Top I", "CCI"], None),
}


def verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """For each claim and method: over all metrics, how often the method's mean is better than the
    baseline's, the mean signed margin, and how many margins exceed the seeds' spread (the larger std);
    the verdict is what these numbers say, never forced."""
    s = summary.set_index(["method", "task", "metric"])
    rows = []
    for claim, (text, methods, baseline) in CLAIMS.items():
        for method in methods:
            base = baseline or f"{method} (w/o ft)"
            wins = clear = clear_loss = total = 0
            margins = []
            if method not in s.index.get_level_values("method"):
                continue
            for (task, metric), row in s.xs(method, level="method").iterrows():
                if (base, task, metric) not in s.index:
                    continue
                other = s.loc[(base, task, metric)]
                sign = -1 if row["lower_is_better"] else 1
                margin = sign * (row["value"] - other["value"])
                spread = np.nanmax([row["std"], other["std"], 0.0])
                total += 1
                wins += margin > 0
                clear += margin > spread and spread > 0
                clear_loss += -margin > spread and spread > 0
                margins.append(margin)
            if not total:
                continue
            if clear > clear_loss and wins > total / 2:
                verdict = "supported at our scale"
            elif clear_loss > clear and wins < total / 2:
                verdict = "not supported at our scale"
            else:
                verdict = "inconclusive: differences within the seed spread or mixed"
            rows.append({"claim": claim, "statement": text, "method": method, "baseline": base, "metrics": total,
                         "better": int(wins), "better_beyond_spread": int(clear), "worse_beyond_spread": int(clear_loss),
                         "mean_margin": float(np.mean(margins)), "verdict": verdict})
    return pd.DataFrame(rows)

"""Per backtest fold, the new-product WAPE of every candidate fit scores at VISUELLE's validation and reported
origins (seed 0): would a choice on the latest fold pick differently? Prints one JSON line per origin.

    PYTHONPATH=$PWD python experiments/choice_folds.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import cutoff_dates, cutoffs_of, fit_config, load  # noqa: E402
from forecast.evaluation.metrics import score  # noqa: E402
from forecast.pipeline import plan  # noqa: E402

for split in ("validation", "reported"):
    panel = load("visuelle", split)
    cuts = cutoffs_of("visuelle", panel, split)
    for cut, date in zip(cuts, cutoff_dates(panel, cuts)):
        cfg = fit_config("visuelle", 0)
        train = panel.truncate(cut)
        planned = plan(cfg, train)
        out = {"split": split, "origin": date, "chosen": planned.chosen["new"] if "new" in planned.chosen else None, "folds": []}
        for f in planned.backtest.folds:
            y = f.truth["new"]
            if not y.size:
                continue
            row = {"cutoff": int(f.cutoff), "items": int(y.shape[0])}
            for name, g in f.forecasts.items():
                if "new" in g:
                    row[name] = round(score(y, g["new"])["wape"], 4)
            out["folds"].append(row)
        print(json.dumps(out), flush=True)

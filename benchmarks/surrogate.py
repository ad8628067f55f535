"""A surrogate of a recorded problem: decoded-architecture features to blind fitness (and true PSNR), fitted
with scikit-learn (the ``predictor`` extra, as the product's predictor is), validated on held-out architectures, and served as a fitness strategy:
``SurrogateEvaluator`` is the product's ``Evaluator`` with the fit replaced by a lookup (a genome the table
holds) or a prediction, so any algorithm and operator runs on it unchanged through the normal toolbox and
loop, and one search takes well under a second.
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np

from nasdip_deap.errors import UserError
from nasdip_deap.fitness import Evaluator
from nasdip_deap.genome import GenomeSpec
from nasdip_deap.memory import conv_weight_count
from nasdip_deap.predictor import architecture_features, require_sklearn


def matrix(bits_list: list, spec: GenomeSpec) -> np.ndarray:
    """The product's predictor features (``architecture_features``) of each genome's architecture."""
    return np.array([architecture_features(spec.decode(bits), spec.levels) for bits in bits_list])


class Surrogate:
    """Two regressors over the product's ``architecture_features``: blind fitness and true PSNR (the latter is
    recorded, never searched on). ``model`` is a scikit-learn regressor: ensemble (the default: the mean of
    the gradient-boosting and extra-trees predictions, whose worst Kendall tau over the three problems is the
    highest at 1,000 entries a problem, docs/benchmarking.md), gradient-boosting (histogram gradient boosting),
    random-forest or extra-trees."""

    MODELS = ("ensemble", "gradient-boosting", "random-forest", "extra-trees")

    def __init__(self, spec: GenomeSpec, model: str = "ensemble", seed: int = 0):
        require_sklearn("the surrogate")
        if model not in self.MODELS:
            raise UserError(f"unknown surrogate model {model!r}; valid: {', '.join(self.MODELS)}")
        self.spec, self.model, self.seed = spec, model, seed
        self.models: dict[str, object] = {}
        # one OpenMP thread in this process from here on: a prediction is a few small trees, where a thread
        # team costs far more than it saves (and benchmark searches run one per core); limiting per call
        # costs 15 ms a call
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")

    def _regressor(self, model: str | None = None):
        from sklearn.ensemble import (ExtraTreesRegressor, HistGradientBoostingRegressor, RandomForestRegressor,
                                      VotingRegressor)

        model = model or self.model
        if model == "ensemble":  # the two disagree where each is weak: their mean ranks better than either
            return VotingRegressor([(name, self._regressor(name)) for name in ("gradient-boosting", "extra-trees")])
        if model == "gradient-boosting":
            return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, min_samples_leaf=5,
                                                 random_state=self.seed)
        if model == "extra-trees":  # half the features a split: the features are many and correlated
            return ExtraTreesRegressor(n_estimators=200, min_samples_leaf=3, max_features=0.5, n_jobs=1,
                                       random_state=self.seed)
        return RandomForestRegressor(n_estimators=100, min_samples_leaf=2, n_jobs=1, random_state=self.seed)

    def fit(self, entries: list[dict], targets: tuple[str, ...] = ("fitness", "psnr")) -> "Surrogate":
        """Fit a regressor per target (validation needs only fitness, a search both)."""
        x = matrix([e["bits"] for e in entries], self.spec)
        values_of = {"fitness": lambda e: e["fitness"][0], "psnr": lambda e: e["metrics"].get("psnr", math.nan)}
        for target in targets:
            values = [values_of[target](e) for e in entries]
            y = np.array(values, dtype=float)
            known = np.isfinite(y)
            if known.sum() >= 2:
                self.models[target] = self._regressor().fit(x[known], y[known])
        return self

    def predict(self, bits_list: list, target: str = "fitness") -> np.ndarray:
        return self.models[target].predict(matrix(bits_list, self.spec))

    def predict_all(self, bits_list: list) -> dict[str, np.ndarray]:
        """Every fitted target's prediction, from one feature matrix."""
        x = matrix(bits_list, self.spec)
        return {target: model.predict(x) for target, model in self.models.items()}


def validation(entries: list[dict], spec: GenomeSpec, model: str = "ensemble", folds: int = 4,
               repeats: int = 2, seed: int = 0) -> dict:
    """Repeated k-fold cross-validation: ``repeats`` random partitions of the entries into ``folds`` parts,
    each part scored by a surrogate fitted on the others. Per fold: Spearman and Kendall tau of predicted
    against recorded blind fitness, and how many of the predicted top 10 % are in the recorded top 10 %;
    the row gives their mean and standard deviation over the ``folds * repeats`` folds (one random split
    moves tau by several hundredths, as much as the gaps between models)."""
    from scipy.stats import kendalltau, spearmanr

    if folds < 2 or len(entries) < 5 * folds:
        raise UserError(f"too few entries to validate a surrogate ({len(entries)}) with {folds} folds")
    scores: dict[str, list[float]] = {"kendall": [], "spearman": [], "top10": [], "fit_seconds": []}
    for repeat in range(repeats):
        order = np.random.default_rng([seed, repeat]).permutation(len(entries))
        for part in np.array_split(order, folds):
            held = set(part.tolist())
            train = [e for i, e in enumerate(entries) if i not in held]
            test = [entries[i] for i in part]
            started = time.perf_counter()
            fitted = Surrogate(spec, model, seed).fit(train, targets=("fitness",))
            scores["fit_seconds"].append(time.perf_counter() - started)
            truth = np.array([e["fitness"][0] for e in test])
            predicted = fitted.predict([e["bits"] for e in test])
            top = max(1, len(test) // 10)
            hits = set(np.argsort(-truth)[:top]) & set(np.argsort(-predicted)[:top])
            scores["kendall"].append(float(kendalltau(truth, predicted).statistic))
            scores["spearman"].append(float(spearmanr(truth, predicted).statistic))
            scores["top10"].append(len(hits) / top)
    row = {"model": model, "entries": len(entries), "folds": folds, "repeats": repeats,
           "train": len(entries) - len(entries) // folds, "test": len(entries) // folds}
    for name, values in scores.items():
        row[name], row[f"{name}_std"] = statistics.fmean(values), statistics.pstdev(values)
    row["kendall_worst"] = min(scores["kendall"])
    return row


class SurrogateEvaluator(Evaluator):
    """The product's evaluator of a recorded problem, without fits: a genome whose architecture the table
    holds gets its recorded record (fitness, true PSNR, parameters, fit seconds); any other gets the
    surrogate's prediction (marked ``"surrogate": true``). Everything else (cache keys, the search loop's
    bookkeeping, hooks) is the real evaluator's, so algorithms and operators run on it unchanged."""

    def __init__(self, *args, table: list[dict], surrogate: Surrogate | None = None, noise: float = 0.0,
                 **kwargs):
        if not (isinstance(noise, (int, float)) and 0 <= noise < math.inf):
            raise UserError(f"fit noise must be a number of dB >= 0, got {noise!r}")
        if noise and surrogate is None:
            raise UserError("fit noise needs a surrogate: it is added to the surrogate's level of every architecture")
        super().__init__(*args, **kwargs)
        self.table = {e["key"]: e for e in table}
        self.surrogate = surrogate
        self.mean_seconds = statistics.fmean(e["seconds"] for e in table) if table else 0.0
        # a real fit's blind score is its architecture's level plus the fit's own noise (initialisation,
        # held-out draw); a table lookup repeats one draw forever and a prediction has none, which lets a
        # search exploit differences no real fit would show
        self.noise = float(noise)

    def record(self, bits, iterations=None, reference_curve=None, curve_margin=1.0, replicate=0, curve_warmup=0.25):
        rec, arch = self._start_record(bits, None, replicate)
        known = self.table.get(arch.key())
        if self.noise:
            # every architecture at the surrogate's level (a recorded value holds one draw of noise already)
            # plus a draw of its own, seeded by the fit's seed: the same search repeats, another seed differs
            predicted = self.surrogate.predict_all([bits])
            quality = float(predicted["fitness"][0]) + float(np.random.default_rng(rec["seed"]).normal(0.0, self.noise))
            psnr = float(predicted["psnr"][0]) if "psnr" in predicted else None
            seconds, parameters = ((known["seconds"], known["parameters"]) if known is not None
                                   else (self.mean_seconds, None))
        elif known is not None:
            quality, psnr, seconds, parameters = (known["fitness"][0], known["metrics"].get("psnr"),
                                                  known["seconds"], known["parameters"])
        elif self.surrogate is not None:
            predicted = self.surrogate.predict_all([bits])
            quality = float(predicted["fitness"][0])
            psnr = float(predicted["psnr"][0]) if "psnr" in predicted else None
            seconds, parameters = self.mean_seconds, None
        else:
            raise UserError(f"architecture {arch.key()} is not in the recorded table and no surrogate was given")
        parameters = parameters or conv_weight_count(arch, self.task.channels)  # unrecorded: its conv weights
        values = {"quality": quality, "parameters": float(parameters), "fit_seconds": seconds}
        metrics = {"heldout_psnr": quality, **({"psnr": psnr} if psnr is not None else {})}
        rec.update(fitness=[values[o] for o in self.settings.objectives],
                   objectives={o: values[o] for o in self.settings.objectives}, metrics=metrics,
                   parameters=parameters, iterations=self.iterations_for(arch), seconds=seconds,
                   device="surrogate", precision=self.runner.options.precision, error=None, failure=None,
                   stopped_early=False, best_step=None, curve=[], pixel_steps=0, duration=0.0,
                   surrogate=known is None or bool(self.noise))
        return rec


def main(argv=None) -> int:
    """``python benchmarks/surrogate.py``: the validation table of every recorded problem, every model."""
    import argparse

    from bench_args import int_at_least, positive_int
    from recorded import FOLDER, PROBLEMS, load

    parser = argparse.ArgumentParser(description="validate the surrogate of each recorded problem")
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--folds", type=int_at_least(2), default=4, help="cross-validation folds (default 4)")
    parser.add_argument("--repeats", type=positive_int, default=2, help="random partitions into folds (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=str(FOLDER))
    args = parser.parse_args(argv)
    print(f"{args.repeats} x {args.folds}-fold cross-validation, mean +- std over folds")
    print("| problem | entries | model | Kendall tau | worst fold | Spearman | top 10 % in top 10 % | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.problems:
        entries = load(name, args.folder)
        spec = PROBLEMS[name].evaluator().spec
        for model in Surrogate.MODELS:
            try:
                row = validation(entries, spec, model, args.folds, args.repeats, args.seed)
            except UserError as exc:
                print(f"| {name} | {len(entries)} | {model} | {exc} | | | | |")
                continue
            print(f"| {name} | {len(entries)} | {model} | {row['kendall']:.3f} +- {row['kendall_std']:.3f} | "
                  f"{row['kendall_worst']:.3f} | {row['spearman']:.2f} | {row['top10']:.0%} | "
                  f"{row['fit_seconds']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

"""Predictor-guided evolution: breed many children, fit only those a model of the run's records ranks best.

Every fit a search spends is a DIP training of seconds to minutes, while breeding a child and asking a
model about it costs microseconds. ``predictor-guided`` breeds ``pool`` times more children than it
fits (by the configured crossover and mutation, as ``mu-plus-lambda`` does), drops the architectures
the run has already scored, ranks the rest with a regression model trained on every record of the run
(features of the decoded architecture, ``architecture_features``; with ``prior=FILE`` also on the
records of earlier runs), and fits the ``lambda`` best-ranked
ones, of which a share ``explore`` is chosen instead by the model's uncertainty (the spread of its
trees), so that the model also learns where it knows least. Survivors are chosen from parents and
children as in ``mu-plus-lambda``. ``predictor-nsga2`` does the same over quality and cost: children
are ranked by predicted dominance (``selNSGA2`` on the predicted objectives) and survivors by NSGA-II.

Each fitted child's record carries what was predicted (``prediction``); each generation's predicted
against measured error (mean absolute error, Kendall's tau) and the model's seconds are in the logbook
and in the algorithm's checkpointed state. Wen et al. (ECCV 2020) and White et al. (BANANAS) report that
such predictors make evolution many times more sample-efficient on NAS benchmarks.

The model comes from scikit-learn (the optional extra ``predictor``: ``pip install 'nasdip-deap[predictor]'``).
"""
from __future__ import annotations

import math
import random
import time

import numpy as np
from deap import algorithms as deap_algorithms
from deap import tools

from .algorithms import History, MuPlusLambda
from .architecture import Architecture
from .errors import UserError
from .memory import conv_weight_count
from .params import PROBABILITY, Param
from .registry import ALGORITHMS

MODELS = ("forest", "extra-trees", "boosting")
ACTIVATION_NAMES = ("leaky_relu", "relu", "elu", "silu")
MIN_RECORDS = 4  # fewer scored architectures than this: the model is not trained, children are drawn at random


def require_sklearn(what: str):
    """scikit-learn's ensemble module, or one line saying how to install it."""
    try:
        from sklearn import ensemble
    except ImportError:
        raise UserError(f"{what} needs scikit-learn, an optional dependency: pip install 'nasdip-deap[predictor]'"
                        ) from None
    return ensemble


def architecture_features(arch: Architecture, levels: int) -> list[float]:
    """A fixed-length numeric description of a decoded architecture (genomes of one spec share ``levels``):
    per level the encoder's and decoder's log2 channels, kernel and options, every skip's log2 channels
    (0: no skip), the meta-parameters, and the log10 count of convolution weights."""
    row: list[float] = []
    for n in range(levels):
        enc, dec = arch.encoders[n], arch.decoders[n]
        row += [math.log2(enc.channels), enc.kernel, float(enc.downsample == "avg"), float(enc.second_conv),
                math.log2(dec.channels), dec.kernel, float(dec.upsample == "bilinear"), float(dec.conv1x1)]
    skips = {(s.source, s.target): s.channels for s in arch.skips}
    row += [math.log2(skips[(i, j)]) + 1.0 if (i, j) in skips else 0.0 for i in range(levels) for j in range(levels)]
    row += [math.log10(arch.learning_rate), math.log2(arch.input_depth), arch.reg_noise_std,
            *(float(arch.activation == name) for name in ACTIVATION_NAMES),
            arch.iterations_fraction or 1.0, float(len(arch.skips)), math.log10(conv_weight_count(arch))]
    return row


class RecordModel:
    """A scikit-learn ensemble per objective over ``architecture_features``: ``fit`` on records, then
    ``predict`` mean and spread (across the trees of a forest; zero for boosting, which has no spread)."""

    def __init__(self, kind: str, trees: int, seed: int, features: float = 1.0):
        self.kind, self.trees, self.seed, self.features = kind, trees, seed, features
        self.models: list = []

    def _new(self):
        ensemble = require_sklearn(f"model {self.kind!r}")
        if self.kind == "boosting":
            return ensemble.HistGradientBoostingRegressor(max_iter=self.trees, min_samples_leaf=2,
                                                          random_state=self.seed)
        cls = ensemble.RandomForestRegressor if self.kind == "forest" else ensemble.ExtraTreesRegressor
        # min_samples_leaf 2: records are few and noisy; one thread: a run's result must not depend on cores
        return cls(n_estimators=self.trees, min_samples_leaf=2, max_features=self.features, random_state=self.seed,
                   n_jobs=1)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "RecordModel":
        self.models = [self._new().fit(X, Y[:, j]) for j in range(Y.shape[1])]
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, spread), each (len(X), objectives)."""
        means, spreads = [], []
        for model in self.models:
            if hasattr(model, "estimators_"):
                per_tree = np.stack([tree.predict(X) for tree in model.estimators_])
                means.append(per_tree.mean(0))
                spreads.append(per_tree.std(0))
            else:
                means.append(model.predict(X))
                spreads.append(np.zeros(len(X)))
        return np.stack(means, 1), np.stack(spreads, 1)


def usable(record: dict, objectives: tuple) -> bool:
    """A record the model can learn from: a finished fit with a finite value of every objective."""
    values = record.get("objectives") or {}
    return record.get("error") is None and isinstance(record.get("architecture"), dict) and \
        all(isinstance(values.get(name), (int, float)) and math.isfinite(values[name]) for name in objectives)


def read_prior(path: str) -> list[dict]:
    """The records of an ``evaluations.jsonl`` or ``cache.jsonl`` of earlier runs (unreadable lines skipped)."""
    from .prior_start import read_records

    return read_records(path, "predictor prior")


def kendall_tau(a, b) -> float | None:
    """Kendall's tau-b of two sequences (None with fewer than 3 pairs or no variation)."""
    if len(a) < 3:
        return None
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return None if tau != tau else float(tau)


@ALGORITHMS.register("predictor-guided")
class PredictorGuided(MuPlusLambda):
    """(mu + lambda) that breeds pool x lambda children and fits the lambda a model of the run's records ranks best."""

    name = "predictor-guided"
    revary = False  # it picks its children from what it predicts of them; varying them again would undo that
    params = {**MuPlusLambda.params, "pool": Param(int, 1, 10_000), "explore": PROBABILITY,
              "model": Param(str, choices=MODELS), "trees": Param(int, 1, 10_000), "prior": Param(str),
              "fresh": PROBABILITY}

    def __init__(self, cxpb: float = 0.5, mutpb: float = 0.3, lambda_: int | None = None, pool: int = 20,
                 explore: float = 0.2, model: str = "forest", trees: int = 100, prior: str | None = None,
                 fresh: float = 0.0):
        super().__init__(cxpb, mutpb, lambda_)
        if cxpb + mutpb <= 0:
            raise UserError(f"{self.name} breeds children by crossover or mutation: --cxpb + --mutpb must be > 0")
        require_sklearn(f"algorithm {self.name!r}")
        self.pool, self.explore, self.model, self.trees, self.prior = pool, explore, model, trees, prior
        # the share of the candidate pool drawn as fresh random genomes instead of bred from the population:
        # on real fits random search kept up with the GA (docs/results.md), so the model may rank both
        self.fresh = fresh
        # records of earlier runs (evaluations.jsonl or cache.jsonl; on other images too), trained on beside
        # the run's own, with a feature that tells them apart, so the model learns their offset
        self.prior_records = read_prior(prior) if prior else []
        self.generations: list[dict] = []  # per generation: what was bred, chosen and how well it was predicted

    # -- ask: breed, rank, choose --------------------------------------------------------------------
    def ask(self, population, toolbox, history: History):
        n = self.lambda_ or len(population)
        total = self.cxpb + self.mutpb  # no reproduction: a copy of a parent is a fit already made
        fresh = int(round(self.fresh * n * self.pool))
        bred = deap_algorithms.varOr(population, toolbox, n * self.pool - fresh, self.cxpb / total, self.mutpb / total)
        if fresh:
            bred += toolbox.population(n=fresh)
        candidates, keys = [], set()
        for child in bred:
            key = history.key_of(child)
            if key not in history.seen and key not in keys:
                keys.add(key)
                candidates.append(child)
        started = time.perf_counter()
        chosen, notes = self.choose(candidates, n, history)
        drawn = {id(child) for child in bred[len(bred) - fresh:]} if fresh else set()
        for child, note in zip(chosen, notes):
            child.prediction = {**note, "origin": "fresh" if id(child) in drawn else "bred"}
        self.generations.append({"generation": history.generation, "bred": len(bred), "candidates": len(candidates),
                                 "fitted": len(chosen), "model_seconds": round(time.perf_counter() - started, 4)})
        return chosen

    def choose(self, candidates: list, n: int, history: History) -> tuple[list, list[dict]]:
        """The ``n`` children to fit and a note of each choice (``prediction`` of its record)."""
        levels = history.spec.levels
        own = [r for r in history.records if usable(r, history.objectives)]
        prior = [r for r in self.prior_records
                 if usable(r, history.objectives) and len(r["architecture"]["encoders"]) == levels]
        rows = own + prior
        if len(candidates) <= n or len(rows) < MIN_RECORDS:
            picked = candidates if len(candidates) <= n else random.sample(candidates, n)
            return picked, [{"chosen_by": "random", "candidates": len(candidates)} for _ in picked]
        X = np.array([architecture_features(Architecture.from_dict(r["architecture"]), levels) + [float(i < len(own))]
                      for i, r in enumerate(rows)])
        Y = np.array([[r["objectives"][name] for name in history.objectives] for r in rows], dtype=float)
        model = RecordModel(self.model, self.trees, random.randrange(2 ** 31)).fit(X, Y)
        C = np.array([architecture_features(history.spec.decode(c), levels) + [1.0] for c in candidates])
        mean, spread = model.predict(C)
        explore = min(int(round(self.explore * n)), n - 1) if n > 1 else 0
        best = self._rank(candidates, mean, n - explore, history)
        taken = set(best)
        rest = [i for i in range(len(candidates)) if i not in taken]
        if explore and spread[:, 0].any():  # the most uncertain of the others, ties by position (reproducible)
            extra = sorted(rest, key=lambda i: (-spread[i, 0], i))[:explore]
        else:
            extra = random.sample(rest, explore)
        notes = []
        for how, indices in (("model", best), ("uncertainty" if spread[:, 0].any() else "random", extra)):
            for rank, i in enumerate(indices):
                notes.append({"chosen_by": how, "rank": rank, "candidates": len(candidates),
                              "predicted": dict(zip(history.objectives, map(float, mean[i]))),
                              "spread": float(spread[i, 0]), "trained_on": len(own), "prior": len(prior)})
        return [candidates[i] for i in best + extra], notes

    def _rank(self, candidates: list, mean: np.ndarray, k: int, history: History) -> list[int]:
        """Indices of the ``k`` best candidates by predicted quality (ties by position)."""
        return sorted(range(len(candidates)), key=lambda i: (-mean[i, 0], i))[:k]

    # -- tell: survivors, and how good the predictions were ----------------------------------------
    def tell(self, population, offspring, toolbox, history):
        survivors = super().tell(population, offspring, toolbox, history)
        pairs = [(child.prediction["predicted"]["quality"], child.fitness.values[0]) for child in offspring
                 if child.fitness.valid and "predicted" in getattr(child, "prediction", {})
                 and math.isfinite(child.fitness.values[0]) and child.fitness.values[0] > 0]
        if self.generations:
            last = self.generations[-1]
            last["mae"] = round(float(np.mean([abs(p - m) for p, m in pairs])), 4) if pairs else None
            tau = kendall_tau([p for p, _ in pairs], [m for _, m in pairs])
            last["tau"] = None if tau is None else round(tau, 4)
        return survivors

    def state_dict(self) -> dict:
        return {"generations": [dict(g) for g in self.generations]}

    def load_state_dict(self, state: dict) -> None:
        self.generations = [dict(g) for g in state.get("generations", [])]

    def logbook_fields(self) -> dict:
        if not self.generations:
            return {}
        last = self.generations[-1]
        return {"predictor_candidates": last["candidates"], "predictor_mae": last.get("mae"),
                "predictor_tau": last.get("tau"), "predictor_seconds": last["model_seconds"]}

    def describe(self) -> dict:
        return {**super().describe(), "pool": self.pool, "explore": self.explore, "model": self.model,
                "trees": self.trees, "prior": self.prior, "fresh": self.fresh}


@ALGORITHMS.register("predictor-nsga2")
class PredictorNSGA2(PredictorGuided):
    """NSGA-II that breeds pool x lambda children and fits the lambda whose predicted objectives dominate."""

    name = "predictor-nsga2"
    multi_objective = True
    default_selection = "nsga2"

    def initialize(self, population, toolbox):
        population = super().initialize(population, toolbox)
        return toolbox.select(population, len(population))  # assigns crowding distances

    def _rank(self, candidates, mean, k, history):
        """Non-dominated sorting and crowding (``selNSGA2``) on the predicted objectives."""
        cls = type(candidates[0])
        stand_ins = []
        for i, values in enumerate(mean):
            ind = cls([i])
            ind.fitness.values = tuple(map(float, values))
            stand_ins.append(ind)
        return [ind[0] for ind in tools.selNSGA2(stand_ins, k)]

    def archive(self, size, similar):
        return tools.ParetoFront(similar=similar)

"""The ask/tell search loop: a search driven by hand equals ``run()``; an algorithm of this file sees the
run's records and keeps a state that the checkpoint carries over a restart; bad tells are one line."""
from __future__ import annotations

import random

import pytest

from nasdip_deap import checkpoint
from nasdip_deap.algorithms import Algorithm
from nasdip_deap.errors import UserError
from nasdip_deap.tasks import Denoise

from .helpers import tiny_search

SETTINGS = {"population": 3, "generations": 2, "iterations": 8, "seed": 4, "mutation": "flip-bit:indpb=0.1",
            "mutpb": 1.0}


@pytest.fixture
def tiny_task(tiny_image):
    return Denoise.from_clean(tiny_image[:, 8:24, 8:24], {"sigma": 25.0}, seed=1)  # 16 px: 3 levels fit


def outcome(search) -> dict:
    """What a run found and fitted, without wall-clock times."""
    return {"fitted": sorted((r["generation"], r["key"], tuple(r["fitness"])) for r in search.cache.values()),
            "archive": [(list(ind), ind.fitness.values) for ind in search.archive],
            "population": [list(ind) for ind in search.population],
            "generations": [row["gen"] for row in search.logbook], "fits": search.totals.fits}


def test_ask_and_tell_by_hand_give_the_result_of_run(tiny_task):
    ran = tiny_search(tiny_task, **SETTINGS).run()
    by_hand = tiny_search(tiny_task, **SETTINGS)
    asked = []
    while not by_hand.done():
        genomes = by_hand.ask()
        assert by_hand.ask() == genomes  # asking again before telling changes nothing
        asked.append(len(genomes))
        # fitted elsewhere (here: one by one, told in reverse order): records are matched by architecture
        by_hand.tell(reversed([by_hand.evaluator.record(bits) for bits in genomes]))
    assert outcome(by_hand) == outcome(ran)
    assert len(asked) == 3 and asked[0] == 3 and sum(asked) == ran.totals.fits


def test_tell_refuses_what_was_not_asked(tiny_task):
    search = tiny_search(tiny_task, **SETTINGS)
    with pytest.raises(UserError, match="nothing was asked for"):
        search.tell([])
    genomes = search.ask()
    with pytest.raises(UserError, match="not asked for"):
        search.tell([{"key": "0" * 20}])
    search = tiny_search(tiny_task, **SETTINGS)
    search.ask()
    with pytest.raises(UserError, match=f"{len(genomes)} of the {len(genomes)} genomes .* have no record"):
        search.tell([])


class BestRecordMutants(Algorithm):
    """Children are mutants of the best record of the whole run (not of the population), mutated once
    more in every later generation: a count it keeps in its state."""

    name = "test-best-record-mutants"

    def __init__(self, cxpb=0.5, mutpb=0.3, lambda_=None):
        super().__init__(cxpb, mutpb, lambda_)
        self.asked = 0
        self.best_seen: list[float] = []

    def ask(self, population, toolbox, history):
        best = max((r for r in history.records if r["error"] is None), key=lambda r: r["fitness"][0])
        self.best_seen.append(best["fitness"][0])
        self.asked += 1
        children = []
        for _ in range(len(population)):
            child = toolbox.individual()
            child[:] = best["bits"]
            for _ in range(self.asked):
                toolbox.mutate(child)
            children.append(child)
        return children

    def tell(self, population, offspring, toolbox, history):
        assert all(history.key_of(child) in history.seen for child in offspring)  # their records are there
        return sorted(population + offspring, key=lambda ind: ind.fitness.values[0], reverse=True)[:len(population)]

    def state_dict(self):
        return {"asked": self.asked, "best_seen": list(self.best_seen)}

    def load_state_dict(self, state):
        self.asked, self.best_seen = state["asked"], list(state["best_seen"])


class Interrupt(Exception):
    pass


class StopAfter:
    """Hook: ends the run (as a kill would) once generation ``n`` is checkpointed."""

    def __init__(self, n):
        self.n = n

    def on_generation(self, search):
        if search.generation == self.n:
            raise Interrupt


def interrupted_and_resumed(task, tmp_path, make_algorithm, **settings):
    """A run stopped after generation 1's checkpoint, then rebuilt from nothing and restored from it."""
    hook = checkpoint.CheckpointHook(tmp_path, {})
    first = tiny_search(task, hooks=[hook, StopAfter(1)], algorithm=make_algorithm(), **settings)
    with pytest.raises(Interrupt):
        first.run()
    state = checkpoint.read_checkpoint(tmp_path / checkpoint.CHECKPOINT_NAME)
    random.seed(12345)  # whatever ran in between drew from the RNGs
    resumed = tiny_search(task, algorithm=make_algorithm(), **settings)
    checkpoint.restore(resumed, state)
    return resumed.run()


def test_an_algorithm_with_records_and_state_needs_no_change_to_the_loop(tiny_task, tmp_path):
    settings = {**SETTINGS, "generations": 3}
    ran = tiny_search(tiny_task, algorithm=BestRecordMutants(), **settings).run()
    algorithm = ran.algorithm
    assert algorithm.asked == 3 and algorithm.best_seen == sorted(algorithm.best_seen)  # best of the run so far
    best = max(ran.cache.values(), key=lambda r: r["fitness"][0])
    assert ran.best().fitness.values[0] == best["fitness"][0]
    resumed = interrupted_and_resumed(tiny_task, tmp_path, BestRecordMutants, **settings)
    assert resumed.algorithm.state_dict() == algorithm.state_dict()
    assert outcome(resumed) == outcome(ran)


def test_a_format_1_checkpoint_still_loads(tmp_path):
    """Checkpoints written before algorithms had a state (format 1) resume as a stateless algorithm's."""
    path = tmp_path / checkpoint.CHECKPOINT_NAME
    state = {key: None for key in checkpoint.STATE_KEYS}
    checkpoint.write_checkpoint(path, {**state, "format": 1})
    assert checkpoint.read_checkpoint(path)["format"] == 1
    checkpoint.write_checkpoint(path, {**state, "format": 99})
    with pytest.raises(UserError, match="expected 2"):
        checkpoint.read_checkpoint(path)

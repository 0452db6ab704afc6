"""Evaluation functions for Hydra's tests: a fast fake one, and ones that fail on purpose.

They live in a module of their own (tests/ is on sys.path, see conftest.py) so that a worker
process can import them by name; the tests bind their arguments with functools.partial.
"""
import math
import os
import random
from pathlib import Path

from microgpt.worker import evaluate_genome, voice

LETTERS = "aeiouy" + "bcdklmnrst"


def fake_names(rng, samples, temperature):
    """Names whose length grows with the temperature, so tuning it changes the heads' scores."""
    longest = max(3, round(9 * temperature))
    return ["".join(rng.choice(LETTERS) for _ in range(rng.randint(2, longest))) for _ in range(samples)]


def fake_evaluate(genome, samples, seed, data=None, temperatures=()):
    """Names and a loss drawn from seed alone, in microseconds: the engine's logic without training."""
    loss = 2.0 + random.Random(seed).random() + genome["lr"]     # as training: one per seed
    names = fake_names(random.Random(f"{seed}:names"), samples, genome["temperature"])
    result = {"names": names, "val_loss": loss, "final_loss": loss, "num_params": genome["n_emb"],
              "seconds": 0.0}
    if temperatures:
        # a voice is a temperature or a (temperature, cooling) pair; cooling shortens the names
        result["names_at"] = [fake_names(random.Random(f"{seed}:names"), samples,
                                         math.prod(voice(v, 1.0)))
                              for v in temperatures]
    return result


def raise_for(genome, samples, seed, data=None, temperatures=(), *, victim):
    """fake_evaluate, except that the evaluation with seed victim (None: every one) raises."""
    if victim is None or seed == victim:
        raise RuntimeError("the organism could not be born")
    return fake_evaluate(genome, samples, seed, data, temperatures)


def exit_for(genome, samples, seed, data=None, temperatures=(), *, victim, marker=None, real=False):
    """Kill the worker process (os._exit) in the evaluation with seed victim: every time, or
    only the first time when marker (a file path) is given. Otherwise evaluate, for real or fake."""
    if seed == victim and (marker is None or not Path(marker).exists()):
        if marker is not None:
            Path(marker).touch()
        os._exit(1)
    return (evaluate_genome if real else fake_evaluate)(genome, samples, seed, data, temperatures)

"""Evaluating trials through the evaluator seam, and scoring what they say under every head."""
import math

from microgpt.evaluators import Task
from microgpt.hydra.genes import full_genome


def score(trial, heads):
    """Fill trial.scores under every head (and scores_at, at each of its temperatures); a
    failed or non-finite one scores -inf. Names at its own temperature are its names (the
    worker samples them once), so they are scored once."""
    heard = trial.result["names_at"] if trial.result is not None and trial.temperatures else []
    # (a voice is a temperature at the organism's own cooling, or a (temperature, cooling) pair)
    trial.scores_at = [judge(names, trial, heads) for names in heard]
    own = trial.genome["temperature"]
    trial.scores = (dict(trial.scores_at[trial.temperatures.index(own)])
                    if heard and own in trial.temperatures
                    else judge(trial.names, trial, heads))


def judge(names, trial, heads):
    """{head name: the score of names}; -inf when trial failed or a score is not finite."""
    scores = {}
    for head in heads:
        value = -math.inf
        if trial.result is not None:
            value = head.score(names, trial.val_loss)
            value = value if math.isfinite(value) else -math.inf
        scores[head.name] = value
    return scores


def training_cost(trial):
    """A rough relative cost of training trial's genome: a layer's multiply-adds per token, times
    layers and positions.

    Submitting the costliest first keeps every worker busy to the end of a generation
    (longest-processing-time-first scheduling); results are still gathered by identity.
    """
    g = trial.genome
    return g["n_layer"] * g["n_emb"] ** 2 * (4 + 2 * g["n_ff_exp"]) * g["n_ctx"]


def _check_result(result, temperatures=()):
    """result if it looks like microgpt.worker.evaluate_genome's dict, else ValueError."""
    def names(x):
        return isinstance(x, list) and all(isinstance(n, str) for n in x)
    if (not isinstance(result, dict) or not names(result.get("names"))
            or not isinstance(result.get("val_loss"), (int, float))
            or (temperatures and not (isinstance(result.get("names_at"), list)
                                      and len(result["names_at"]) == len(temperatures)
                                      and all(names(x) for x in result["names_at"])))):
        raise ValueError(f"evaluation returned {type(result).__name__}, not names and losses")
    return result


def evaluate_all(todo, evaluator, cfg, heads, observer, recall=None):
    """Evaluate and score the trials todo in place, through evaluator.

    recall: the outcomes a resumed run's store already has (microgpt.store.Recall, which gives
    one back only for the trial it was): those are not run again.
    An evaluation that fails (it raised, or its worker died for good) scores -inf, with its
    reason. The costliest are handed over first, so every worker stays busy to the end of a
    generation (longest-processing-time-first); results are matched by identity.
    """
    pending = {}
    for trial in todo:
        outcome = recall.outcome(trial, cfg.steps) if recall else None
        if outcome is None:
            pending[trial.id] = trial
            continue
        _settle(trial, outcome, heads, observer)
    tasks = [Task(t.id, full_genome(t.genome, cfg.steps), cfg.samples, t.seed,
                  t.temperatures) for t in sorted(pending.values(), key=training_cost, reverse=True)]
    for outcome in evaluator.run(tasks, lambda keys: observer.retrying([pending[k] for k in keys])):
        _settle(pending[outcome.key], outcome, heads, observer)


def _settle(trial, outcome, heads, observer):
    """Fill trial from an Outcome (or a recalled one), score it and tell the observer."""
    trial.attempts = outcome.attempts
    trial.error = outcome.error
    if outcome.error is None:
        try:
            trial.result = _check_result(outcome.result, trial.temperatures)
        except ValueError as exc:
            trial.error = str(exc)
    score(trial, heads)
    observer.evaluated(trial)

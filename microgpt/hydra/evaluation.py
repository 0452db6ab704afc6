"""Evaluating organisms through the evaluator seam, and scoring what they say under every head."""
import math

from microgpt.evaluators import Task
from microgpt.hydra.genes import full_genome


def score(organism, heads):
    """Fill organism.scores under every head (and scores_at, at each of its temperatures); a
    failed or non-finite one scores -inf. Names at its own temperature are its names (the
    worker samples them once), so they are scored once."""
    heard = organism.result["names_at"] if organism.result is not None and organism.temperatures else []
    # (a voice is a temperature at the organism's own cooling, or a (temperature, cooling) pair)
    organism.scores_at = [judge(names, organism, heads) for names in heard]
    own = organism.genome["temperature"]
    organism.scores = (dict(organism.scores_at[organism.temperatures.index(own)])
                       if heard and own in organism.temperatures
                       else judge(organism.names, organism, heads))


def judge(names, organism, heads):
    """{head name: the score of names}; -inf when organism failed or a score is not finite."""
    scores = {}
    for head in heads:
        value = -math.inf
        if organism.result is not None:
            value = head.score(names, organism.val_loss)
            value = value if math.isfinite(value) else -math.inf
        scores[head.name] = value
    return scores


def training_cost(organism):
    """A rough relative cost of training organism: a layer's multiply-adds per token, times layers
    and positions.

    Submitting the costliest first keeps every worker busy to the end of a generation
    (longest-processing-time-first scheduling); results are still gathered by identity.
    """
    g = organism.genome
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
    """Evaluate and score the organisms todo in place, through evaluator.

    recall: the outcomes a resumed run's store already has (microgpt.store.Recall, which gives
    one back only for the organism it was): those are not run again.
    An evaluation that fails (it raised, or its worker died for good) scores -inf, with its
    reason. The costliest are handed over first, so every worker stays busy to the end of a
    generation (longest-processing-time-first); results are matched by identity.
    """
    pending = {}
    for org in todo:
        outcome = recall.outcome(org, cfg.steps) if recall else None
        if outcome is None:
            pending[org.id] = org
            continue
        _settle(org, outcome, heads, observer)
    tasks = [Task(o.id, full_genome(o.genome, cfg.steps), cfg.samples, o.seed,
                  o.temperatures) for o in sorted(pending.values(), key=training_cost, reverse=True)]
    for outcome in evaluator.run(tasks, lambda keys: observer.retrying([pending[k] for k in keys])):
        _settle(pending[outcome.key], outcome, heads, observer)


def _settle(org, outcome, heads, observer):
    """Fill org from an Outcome (or a recalled one), score it and tell the observer."""
    org.attempts = outcome.attempts
    org.error = outcome.error
    if outcome.error is None:
        try:
            org.result = _check_result(outcome.result, org.temperatures)
        except ValueError as exc:
            org.error = str(exc)
    score(org, heads)
    observer.evaluated(org)

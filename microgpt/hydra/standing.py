"""Standing: how surely an organism beats random genomes, under every head at once, and the
winner chosen by it and written as genome.json's dict."""
import math
from bisect import bisect_left, bisect_right

from microgpt._core import half_erfc_total, total
from microgpt.errors import MicrogptError
from microgpt.hydra.genes import full_genome
from microgpt.train import TrainingConfig

JUDGE_TRIALS = 3        # the fresh trials an outside judge averages (the measure took 3)


def yardstick(reference, heads, rejudged=()):
    """{head name: (the random genomes' scores, sorted, their mean, their spread, the noise)}.

    The reference is the run's first generation: random genomes from the new-organism
    distribution, each judged once. One trial spreads their scores wider than the genomes
    themselves differ: each carries the trial-to-trial noise (another seed, other names), which
    an outside judge averaging many trials does not see. That noise is measured on the rejudged
    organisms as they sound in the random genomes' voice (`in_reference_voice`: the pooled
    variance between their trials; every evaluation samples as many names; a cooled voice can
    scatter far more, and is not what the random genomes speak) and taken out by drawing each
    score toward the mean, keeping at least half the spread; the noise (a standard deviation) is
    kept to judge how surely an organism beats them (`standing_key`). A random genome that failed
    counts too, below everything.
    """
    stick = {}
    for h in heads:
        xs = [x for x in (o.fitness(h.name) for o in reference) if math.isfinite(x)]
        mean = total(xs) / len(xs) if xs else 0.0
        var = total((x - mean) * (x - mean) for x in xs) / len(xs) if xs else 0.0
        squares = dof = 0.0
        for o in rejudged:
            trials = [x for x in in_reference_voice(o, h.name) if math.isfinite(x)]
            if len(trials) > 1:
                m = total(trials) / len(trials)
                squares += total((x - m) * (x - m) for x in trials)
                dof += len(trials) - 1
        noise = squares / dof if dof else 0.0
        keep = math.sqrt(max(1 - noise / var, 0.25)) if var else 1.0
        scores = [-math.inf] * (len(reference) - len(xs)) + sorted(mean + (x - mean) * keep for x in xs)
        stick[h.name] = (scores, mean, math.sqrt(var) * keep or 1.0, math.sqrt(noise))
    return stick


def in_reference_voice(organism, head):
    """head's score of each of organism's trials heard as a new organism speaks (temperature 1
    and no cooling, TrainingConfig's defaults): [] when its cooling is another, or its trials did
    not sample at temperature 1."""
    voice = TrainingConfig()
    if organism.genome["cooling"] != voice.cooling:
        return []
    scores = []
    for t in organism.judged():
        if voice.temperature in t.temperatures:
            scores.append(t.scores_at[t.temperatures.index(voice.temperature)][head])
        elif t.genome["temperature"] == voice.temperature:
            scores.append(t.scores[head])
    return scores


def percentile(x, scores):
    """The share of the sorted scores below x (ties count half), in [0, 1]."""
    return (bisect_left(scores, x) + bisect_right(scores, x)) / (2 * len(scores)) if scores else 0.5


def standing_key(organism, stick):
    """(standing, worst margin): the margin, its weakest head's score in spreads from the random
    genomes' mean (within +-3), breaks ties: of organisms that beat the same share of random
    genomes, the one whose weakest head is strongest.

    Under each head the share is the chance that the organism beats each random genome when an
    outside judge measures both, averaging JUDGE_TRIALS fresh trials of each: its true score is
    the mean of its trials give or take their standard error, and the judge's measurements of
    it and of the random genome scatter by their trial-to-trial spread. So an organism seen on
    few trials is counted neither better nor worse than it was seen, and one whose trials
    scatter widely (an unsteady genome) is counted as the gamble it is.
    """
    shares, margins = [], []
    trials = organism.judged()
    for name, (scores, mean, spread, noise) in stick.items():
        x = organism.fitness(name)
        own = trial_variance(trials, name, noise)
        error = math.sqrt(own / max(len(trials), 1) + (own + noise * noise) / JUDGE_TRIALS)
        shares.append(expected_share(x, error, scores))
        margins.append(min(max((x - mean) / spread, -3.0), 3.0) if math.isfinite(x) else -math.inf)
    return total(shares) / len(shares), min(margins)


def joint_key(organism, sticks):
    """(mean standing over the yardsticks, the worst margin among them): `standing_key` against
    each of several yardsticks at once."""
    keys = [standing_key(organism, stick) for stick in sticks]
    return total(k[0] for k in keys) / len(keys), min(k[1] for k in keys)


def trial_variance(trials, head, noise):
    """The variance of head's score from trial to trial: over these trials, or noise squared
    (the spread measured over many organisms) when that is larger."""
    xs = [t.scores[head] for t in trials if math.isfinite(t.scores[head])]
    m = total(xs) / len(xs) if xs else 0.0
    own = total((x - m) * (x - m) for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return max(own, noise * noise)


def expected_share(x, error, scores):
    """The expected share of scores below x when x is measured with this standard error: the
    percentile when the error is 0."""
    if not error or not math.isfinite(x) or not scores:
        return percentile(x, scores)
    return half_erfc_total(scores, x, error * math.sqrt(2)) / len(scores)


def standing(organism, stick):
    """organism's mean percentile under the heads among the run's random genomes, in [0, 1].

    Under each head, its percentile is the share of the random genomes (their scores from
    `yardstick`) that scored below it, ties counting half. Percentiles have no scale, so Flow,
    Symmetry, Creativity and the held-out loss weigh the same, and 0.5 is what a typical random
    genome stands at: it is what an outside judge measures against random genomes.
    """
    return standing_key(organism, stick)[0]


def choose_winner(evolution):
    """(the island that bred it, the winner, its standing): the first finalist, the organism of the
    run with the best standing among random genomes on its confirming trials.
    MicrogptError when every evaluation failed."""
    if not evolution.finalists or evolution.finalists[0].birth.result is None:
        raise MicrogptError("every evaluation failed; no genome to write (see the log for reasons)")
    winner = evolution.finalists[0]
    return winner.head, winner, standing(winner, evolution.yardstick)


def finite_or_none(x):
    """x, or None when it is not a finite number (JSON has no inf or NaN)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def winner_genome(winner, winner_standing, evolution, mode="hydra"):
    """The genome.json dict for the winner: its genes, and what reproduces its first evaluation
    (`microgpt` with this genome trains with `seed` and gets `loss`, sampling `names` first),
    with its mean scores over its trials and its standing among the random genomes."""
    cfg = evolution.config
    genome = full_genome(winner.genome, cfg.steps)
    genome.update({
        "loss": finite_or_none(winner.val_loss),
        "generation": cfg.global_generation(winner),
        "evolved": True,
        "seed": winner.birth.seed,
        "names": winner.shown_names(),
        "head": winner.head,
        "scores": {h.name: finite_or_none(winner.fitness(h.name)) for h in evolution.heads},
        "trials": len(winner.judged()),
        "standing": winner_standing,
        "mode": mode,
        "run_seed": cfg.seed,
        "organism": winner.birth.id,       # that evaluation's id
    })
    return genome

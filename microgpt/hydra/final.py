"""The final judgement: the run's best organisms re-judged on fresh seeds at many voices, the
leader's genes tuned one at a time, the best few confirmed on fresh seeds."""
from microgpt.hydra.evaluation import evaluate_all
from microgpt.hydra.genes import tuning_values
from microgpt.hydra.standing import joint_key, yardstick
from microgpt.hydra.voices import at_temperatures, temperature_grid, voice_of

# The final judgement (`final_judgement`):
FINALISTS = 6           # each head's champion, then the best by standing,
FINAL_TRIALS = 4        # ... each judged on this many fresh seeds;
TUNED = ("n_ctx", "lr", "n_layer", "n_emb")   # then the leader's genes, one by one, from its
GRID_COOLINGS = (0.7, 0.8, 0.9, 1.0)   # the finalists are also heard cooling by these
TUNING_TRIALS = 3       # ... each other value on this many fresh seeds;
CONFIRMED = 4           # then the best few organisms, each at its best temperature,
CONFIRM_TRIALS = 10     # ... on this many more fresh seeds.


def final_judgement(populations, evaluations, reference, heads, evaluator, cfg, observer, recall):
    """(the confirmed organisms ranked best first, the yardstick of the random first generation):
    the first is the winner. Organisms are ranked by `joint_key`: their mean standing among the
    random first generation and among every organism the run bred (the best organisms all beat
    the random genomes; among the run's own they stay apart). In three stages, every trial on a
    fresh seed:

    1. The finalists: each head's champion, then the run's best births by standing at their best
       voice, FINALISTS in all, each judged FINAL_TRIALS times, heard at every voice of
       `temperature_grid` with GRID_COOLINGS (training is the same, only how it speaks changes).
    2. Tuning: the leader (the organism of the best organism-at-a-voice so far), from that voice,
       is trained again with each other value of a gene (`tuning_values`), TUNING_TRIALS times
       each, one gene of TUNED after another, the leader chosen again before each.
    3. Confirmation: the CONFIRMED best organisms of both stages, each at its best temperature
       (`one_of_each`: else one organism heard well at several temperatures fills the places,
       and its luck in the stages before decides), are judged CONFIRM_TRIALS times more at it and
       ranked on those trials alone: the stages before picked them among many, so their own
       trials flatter them; fresh ones do not.
    The evaluations made are appended to evaluations.
    """
    def judge_all(todo, say, organisms):
        if todo:
            observer.final_started(organisms, todo, say)
            evaluate_all(todo, evaluator, cfg, heads, observer, recall)
            evaluations.extend(todo)

    def trials_of(organisms, n, temperatures=None, coolings=()):
        trials = {o: [o.rejudge(cfg.seed) for _ in range(n)] for o in organisms}
        for o, ts in trials.items():
            for t in ts:
                t.temperatures = temperatures or temperature_grid(o.genome, coolings)
        return trials

    def heard(trials):
        return [v for o, ts in trials.items() for v in at_temperatures(o, heads, ts)]

    births = [o for o in evaluations if o.trial == 0 and o.result is not None]
    everyone = [o for o in evaluations if o.trial == 0]     # failed births too, below everything
    tuned = []

    def rejudged():                 # every organism judged more than once so far
        return [o for o in births if o.retrials] + tuned

    def sticks():
        """The yardsticks the stages rank by (`joint_key`): the random first generation, and
        every organism the run bred, among which the organisms that beat every random genome
        stay apart."""
        return yardstick(reference, heads, rejudged()), yardstick(everyone, heads, rejudged())

    stick = sticks()
    finalists = []
    for o in ([populations[h.name][0] for h in heads]
              + sorted(births, key=lambda o: best_voice(o, heads, stick), reverse=True)):
        if o.result is not None and o not in finalists and len(finalists) < max(FINALISTS, len(heads)):
            finalists.append(o)
    final = trials_of(finalists, FINAL_TRIALS, coolings=GRID_COOLINGS)
    judge_all([t for ts in final.values() for t in ts],
              "each head's champion, then the best by standing", finalists)
    stick = sticks()
    candidates = sorted(heard(final), key=lambda v: joint_key(v, stick), reverse=True)
    if not candidates:                      # every final trial failed
        return finalists, stick[0]
    for gene in TUNED:
        best = candidates[0]                # an organism heard at its best voice
        leader = best.of
        others = [o for o in (leader.retuned(gene, v, cfg.seed, best)
                              for v in tuning_values(gene, leader.genome)) if o is not None]
        tuning = trials_of(others, TUNING_TRIALS)
        judge_all([t for ts in tuning.values() for t in ts],
                  f"the best so far, with other values of {gene}", others)
        tuned += others
        candidates += heard(tuning)
        candidates.sort(key=lambda v: joint_key(v, stick), reverse=True)
    chosen = one_of_each(candidates, CONFIRMED)
    confirm = {v: trials_of([v.of], CONFIRM_TRIALS, (voice_of(v),))[v.of] for v in chosen}
    judge_all([t for ts in confirm.values() for t in ts],
              "the best, each at its best temperature, on more fresh seeds", [v.of for v in chosen])
    confirmed = [at_temperatures(v.of, heads, confirm[v]) for v in chosen]
    confirmed = [c[0] for c in confirmed if c]
    stick = sticks()
    ranked = sorted(confirmed or candidates, key=lambda v: joint_key(v, stick), reverse=True)
    return ranked, stick[0]


def one_of_each(variants, n):
    """The first n of variants (organisms heard at a temperature, ranked) that are of different
    organisms: each organism at its best temperature."""
    chosen = []
    for v in variants:
        if len(chosen) < n and all(v.of is not c.of for c in chosen):
            chosen.append(v)
    return chosen


def best_voice(organism, heads, sticks):
    """organism's joint_key at the temperature where it stands best."""
    return max((joint_key(v, sticks) for v in at_temperatures(organism, heads)),
               default=joint_key(organism, sticks))

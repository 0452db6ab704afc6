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
    judgement = Judgement(evaluations, reference, heads, evaluator, cfg, observer, recall)
    finalists, candidates = judgement.finalists(populations)
    if not candidates:                      # every final trial failed
        return finalists, judgement.sticks()[0]
    for gene in TUNED:
        candidates = judgement.tune(gene, candidates)
    return judgement.confirm(candidates)


class Judgement:
    """The final judgement's state between its stages: the run's births, the organisms tuned so
    far, and how it evaluates (through the evaluator, told to the observer, appended to the
    run's evaluations)."""

    def __init__(self, evaluations, reference, heads, evaluator, cfg, observer, recall):
        self.evaluations, self.reference, self.heads = evaluations, reference, heads
        self.evaluator, self.cfg, self.observer, self.recall = evaluator, cfg, observer, recall
        self.births = [t.organism for t in evaluations if t.n == 0 and t.result is not None]
        self.everyone = [t.organism for t in evaluations if t.n == 0]   # failed births too, below all
        self.tuned = []
        self.stick = None           # the yardsticks of stage 1, which stage 2 ranks on

    def sticks(self):
        """The yardsticks the stages rank by (`joint_key`): the random first generation, and
        every organism the run bred, among which the organisms that beat every random genome
        stay apart; each measuring the noise on every organism judged more than once so far."""
        rejudged = [o for o in self.births if len(o.trials) > 1] + self.tuned
        return (yardstick(self.reference, self.heads, rejudged),
                yardstick(self.everyone, self.heads, rejudged))

    def judge(self, trials, say, organisms):
        """Evaluate the trials (lists of new trials) of organisms, described by say."""
        todo = [t for ts in trials for t in ts]
        if todo:
            self.observer.final_started(organisms, todo, say)
            evaluate_all(todo, self.evaluator, self.cfg, self.heads, self.observer, self.recall)
            self.evaluations.extend(todo)

    def trials_of(self, organisms, n, temperatures=None, coolings=()):
        """{organism: n new trials of it on fresh seeds}, each to be heard at temperatures (or
        at its `temperature_grid` with coolings)."""
        trials = {o: [o.rejudge(self.cfg.seed) for _ in range(n)] for o in organisms}
        for o, ts in trials.items():
            for t in ts:
                t.temperatures = temperatures or temperature_grid(o.genome, coolings)
        return trials

    def heard(self, trials):
        """Every organism of trials at every voice it was heard at (`at_temperatures`)."""
        return [v for o, ts in trials.items() for v in at_temperatures(o, self.heads, ts)]

    def ranked(self, variants, stick):
        return sorted(variants, key=lambda v: joint_key(v, stick), reverse=True)

    def finalists(self, populations):
        """Stage 1: (the finalists, every one of them at every voice, ranked best first)."""
        stick = self.sticks()
        finalists = []
        for o in ([populations[h.name][0] for h in self.heads]
                  + sorted(self.births, key=lambda o: best_voice(o, self.heads, stick), reverse=True)):
            if (o.birth.result is not None and o not in finalists
                    and len(finalists) < max(FINALISTS, len(self.heads))):
                finalists.append(o)
        final = self.trials_of(finalists, FINAL_TRIALS, coolings=GRID_COOLINGS)
        self.judge(final.values(), "each head's champion, then the best by standing", finalists)
        self.stick = self.sticks()
        return finalists, self.ranked(self.heard(final), self.stick)

    def tune(self, gene, candidates):
        """Stage 2, for one gene: the leader retrained with its other values; the candidates
        with them, ranked again (on the yardsticks of stage 1)."""
        best = candidates[0]                # an organism heard at its best voice
        leader = best.organism
        others = [o for o in (leader.retuned(gene, v, self.cfg.seed, best.voice)
                              for v in tuning_values(gene, leader.genome)) if o is not None]
        tuning = self.trials_of(others, TUNING_TRIALS)
        self.judge(tuning.values(), f"the best so far, with other values of {gene}", others)
        self.tuned += others
        return self.ranked(candidates + self.heard(tuning), self.stick)

    def confirm(self, candidates):
        """Stage 3: (the CONFIRMED best, each at its best voice, ranked on fresh trials alone,
        the yardstick of the random first generation)."""
        chosen = one_of_each(candidates, CONFIRMED)
        confirm = {v: self.trials_of([v.organism], CONFIRM_TRIALS, (voice_of(v),))[v.organism]
                   for v in chosen}
        self.judge(confirm.values(), "the best, each at its best temperature, on more fresh seeds",
                   [v.organism for v in chosen])
        confirmed = [at_temperatures(v.organism, self.heads, confirm[v]) for v in chosen]
        confirmed = [c[0] for c in confirmed if c]
        stick = self.sticks()
        return self.ranked(confirmed or candidates, stick), stick[0]


def one_of_each(variants, n):
    """The first n of variants (organisms heard at a voice, `Heard`, ranked) that are of
    different organisms: each organism at its best voice."""
    chosen = []
    for v in variants:
        if len(chosen) < n and all(v.organism is not c.organism for c in chosen):
            chosen.append(v)
    return chosen


def best_voice(organism, heads, sticks):
    """organism's joint_key at the temperature where it stands best."""
    return max((joint_key(v, sticks) for v in at_temperatures(organism, heads)),
               default=joint_key(organism, sticks))

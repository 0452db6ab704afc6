"""What a person sees of a Hydra run: the console (stdout, a progress bar on stderr) and the log.

An observer of the engine (microgpt.hydra.Observer), as the store is. Lines go to the run's
log file and to stdout (all of them, or with --quiet only the final table); progress goes to
stderr, only on a terminal: one bar for the whole run, with a time estimate.

The seed's look, in at most WIDTH columns: `  [Weaver] Champion: Emb:32 Head:4 Lay:2 LR:0.0051
-> Score: 0.82 (Flow)`. A genome shows the seed's four genes and only those of the others that
evolution moved off their defaults (the banner says which defaults); a line that would still be
wider goes on over an indented second line.
"""
import json
import math
import sys
import time

from microgpt.hydra import (
    Heard,
    Observer,
    at_defaults,
    describe,
    expected_evaluations,
    final_evaluations,
    generation_evaluations,
    standing,
)

WIDTH = 100             # the widest line a default run prints
WAVE = "this wave"      # the progress bar's count in the final judgement, whose waves are not a head's


def open_log(directory, prefix):
    """A log file opened new in directory (which exists): <prefix>-YYYYmmdd-HHMMSS[-n].log."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        stem = f"{prefix}-{stamp}" + (f"-{n}" if n > 1 else "")
        try:
            return open(directory / f"{stem}.log", "x", encoding="utf-8")
        except FileExistsError:
            continue
    raise OSError(f"{directory}: too many runs started in the same second")


def show_score(x):
    return f"{x:.2f}" if math.isfinite(x) else "failed"


def score_words(organism, heads):
    """['Weaver 0.63,', 'Mirror 0.32,', 'Spark 1.82']: its mean score under each head, as words
    for `fill`."""
    words = [f"{h.name} {show_score(organism.fitness(h.name))}" for h in heads]
    return [w + "," for w in words[:-1]] + words[-1:]


def fill(first, words, indent, width=WIDTH):
    """first, then words (each kept whole) after it, one space apart, as lines of at most width
    columns where they fit: a word that would pass width starts a new line, indent spaces in."""
    lines = [first]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > width:
            lines.append(" " * indent + word)
        else:
            lines[-1] += " " + word
    return lines


def bred_by(head_name):
    """'←Mirror': the mark of a champion bred on another head's island (it came at a Gathering)."""
    return f"←{head_name}"


def standing_words(heads, x=None):
    """What a standing is, in a line (`microgpt.hydra.standing`): with x, the winner's own.

    Under each head, the share of the first generation's random genomes an organism beats when
    an outside judge measures both on fresh trials; the mean of the shares over the heads."""
    over = "mean over the heads" if len(heads) > 1 else f"under {heads[0].name}"
    if x is None:
        return f"(standing: the share of the first generation's random genomes it beats, {over})"
    shown = f"{x:.2f}"              # the share as the standing shows it: 0.86 and 86%
    return f"standing {shown}: it beats {float(shown):.0%} of the first generation's random genomes, {over}"


def why_the_winner(winner, champions, heads):
    """A line on why the winner is not simply a head's champion: the final judgement ranks on
    standing over every head, on fresh trials; a champion tops its own head's score."""
    heard = winner.organism if isinstance(winner, Heard) else None   # (else no voice was heard)
    own = [h.name for h in heads if champions[h.name] is heard]
    if own:
        return f"It is {' and '.join(own)}'s champion too, and first on standing over every head."
    if len(heads) == 1:
        return "Why not the champion: the final judgement ranks on standing, on fresh trials."
    return "Why not a champion: each tops one head; the final judgement ranks on standing over all heads."


class Console(Observer):
    """The command's view of a run: stdout, the human-readable log, a progress bar on stderr."""

    def __init__(self, cfg, heads, log, quiet, progress):
        self.cfg, self.heads, self.log = cfg, heads, log
        self.quiet, self.progress = quiet, progress
        self.width = max(len(h.name) for h in heads) + 2
        self.bar = None
        self.total = expected_evaluations(cfg.population, cfg.generations, cfg.cycles, len(heads))
        self.finished = 0                   # evaluations of the run so far
        self.todo, self.done = {}, {}       # this wave's evaluations per head (or in all)
        self.by_head = True
        self.gathered = self.explained = self.judging = False

    def say(self, text="", chatter=True):
        """A line for the log, and for stdout unless it is chatter and the run is quiet."""
        self.log.write(text + "\n")
        self.log.flush()
        if not (chatter and self.quiet):
            if self.bar is not None:        # off the terminal while the line is printed
                self.bar.clear()
            print(text, flush=True)
            if self.bar is not None:
                self.bar.refresh()

    def note(self, text):
        """A line for the log only."""
        self.log.write(text + "\n")
        self.log.flush()

    def warn(self, text):
        """A line for the log and stderr (around the progress bar)."""
        self.note(text)
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def champion_lines(self, head, organism):
        """'  [Weaver] Champion: Emb:32 Head:2 Lay:1 LR:0.0118 Cool:0.73 -> Score: 0.78 (Flow)
        ←Mirror' (the mark when another head's island bred it); the score on a line of its own
        if the whole is wider than WIDTH."""
        tag = f"  {f'[{head.name}]'.ljust(self.width)} Champion:"
        score = f"-> Score: {show_score(organism.fitness(head.name))} ({head.objective})"
        if organism.head != head.name:
            score += " " + bred_by(organism.head)
        return fill(tag, [*describe(organism.genome, changed=True).split(), score], self.width + 3)

    def primordial_started(self, todo):
        self.say(f"The primordial creature (every gene at its default), on "
                 f"{plural(len(todo), 'seed')}: the baseline")
        self.start_wave(todo, "primordial", self.total, by_head=False)

    def generation_started(self, cycle, generation, todo):
        cfg = self.cfg
        self.say(f"Cycle {cycle + 1}/{cfg.cycles} · Generation {generation + 1}/{cfg.generations}"
                 f" ({len(todo)} to evaluate)")
        waves_after = cfg.cycles * cfg.generations - (cycle * cfg.generations + generation + 1)
        after = (waves_after * generation_evaluations(cfg.population, len(self.heads))
                 + final_evaluations(len(self.heads)))
        self.start_wave(todo, f"cycle {cycle + 1}/{cfg.cycles} gen {generation + 1}/{cfg.generations}",
                        self.finished + len(todo) + after, by_head=True)

    def start_wave(self, todo, desc, total, by_head):
        """Count this wave's evaluations (per head, or in all) and show the run's on the bar (on
        a terminal), whose total (at most how many the run makes) is now total."""
        self.total, self.by_head = total, by_head
        self.todo = ({h.name: sum(t.organism.head == h.name for t in todo) for h in self.heads} if by_head
                     else {WAVE: len(todo)})
        self.done = dict.fromkeys(self.todo, 0)
        if not self.progress:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=self.finished, unit="eval", file=sys.stderr,
                            leave=False, desc=desc, postfix=self.counts())
        else:
            self.bar.total = total
            self.bar.set_description_str(desc, refresh=False)
            self.bar.set_postfix_str(self.counts())

    def counts(self):
        """'Weaver 3/6  Mirror 2/6  Spark 6/6': this wave's evaluations done per head (or
        'this wave 5/36' in the final judgement)."""
        return "  ".join(f"{h} {self.done[h]}/{n}" for h, n in self.todo.items())

    def evaluated(self, trial):
        if trial.error is not None:          # its first line: the store keeps the traceback
            why = trial.error.partition("\n")[0]
            self.warn(f"microgpt-hydra: {trial.id} ({describe(trial.genome)}) failed, "
                      f"scored worst: {why}")
        self.finished += 1
        self.done[trial.organism.head if self.by_head else WAVE] += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts(), refresh=False)
            self.bar.update(1)

    def generation(self, cycle, generation, populations):
        for h in self.heads:
            for line in self.champion_lines(h, populations[h.name][0]):
                self.say(line)

    def gathering(self, cycle, pool, received):
        sizes = sorted({len(v) for v in received.values()})
        took = "/".join(str(n) for n in sizes)
        self.say(f"  >> The Gathering: {len(pool)} champions pooled; each head took in {took} "
                 f"of the others'.")
        if not self.gathered:               # the seed's sentence, and the mark, once a run
            name = next((o.head for took in received.values() for o in took), self.heads[0].name)
            self.say(f"     The organism learns from all heads. {bred_by(name)} marks a champion "
                     f"bred on {name}'s island.")
            self.gathered = True

    def cycle_done(self, cycle, seconds):
        self.say(f"  Cycle {cycle + 1} took {seconds:.1f}s")
        self.say()

    def final_started(self, organisms, todo, what):
        if not self.judging:
            self.say("The final judgement: the run's best, re-judged on fresh seeds and ranked by "
                     "standing")
            if not self.quiet:
                self.say("  " + standing_words(self.heads))
                self.explained = True
            self.judging = True
        self.say(f"  {plural(len(organisms), 'organism')}: {what} ({len(todo)} to evaluate)")
        self.start_wave(todo, "final judgement", max(self.total, self.finished + len(todo)),
                        by_head=False)

    def retrying(self, organisms):
        self.warn(f"microgpt-hydra: a worker process died; retrying {len(organisms)} lost "
                  f"evaluation{'s' if len(organisms) != 1 else ''} in a new pool")

    def ascended(self, evolution, mode, winner, winner_standing, genome):
        """The final table: every head's champion with its names, then the winner and why."""
        self.close_bar()
        table = []
        for h in evolution.heads:
            champion = evolution.champions[h.name]
            table += self.champion_lines(h, champion)
            names = champion.shown_names()
            table += fill(" " * (self.width + 2), [n + "," for n in names[:-1]] + names[-1:],
                          self.width + 3)
        loss = "unknown" if genome["loss"] is None else f"{genome['loss']:.4f}"
        table += fill(f"Winner: [{winner.head}]", [*describe(winner.genome).split(),
                                                  f"(val_loss {loss})"], 2)
        table.append(f"  born in generation {genome['generation']}"
                     + (", tuned in the final judgement" if winner.tuned else ""))
        scores = score_words(winner, evolution.heads)
        standing = f"standing {winner_standing:.2f}"
        if self.explained:
            scores[-1] += f"; {standing}"
        table += fill(f"  mean of {plural(genome['trials'], 'fresh trial')}:", scores, 4)
        if not self.explained:
            table.append("  " + standing_words(evolution.heads, winner_standing))
        table.append("  " + why_the_winner(winner, evolution.champions, evolution.heads))
        table += self.primordial_lines(evolution)
        if len(evolution.heads) > 1:
            table.append(f"Pareto front: {plural(len(evolution.front), 'organism')} that no other "
                         f"beats on every head (kept in the store)")
        self.say("━" * 66, chatter=False)
        self.say("Hydra Ascended" if mode == "hydra" else "Evolution Complete", chatter=False)
        for line in table:
            self.say(line, chatter=False)

    def primordial_lines(self, evolution):
        """'Primordial (the defaults), 3 trials: Weaver 0.41, ...; standing 0.31': the baseline
        the winner is measured against, the mean of its trials ([] when it was not heard)."""
        first = evolution.primordial
        if first is None:
            return []
        scores = score_words(first, evolution.heads)
        scores[-1] += f"; standing {standing(first, evolution.yardstick):.2f}"
        return fill(f"Primordial (the defaults), {plural(len(first.judged()), 'trial')}:", scores, 4)

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def plural(n, word, words=None):
    """'1 Head', '3 Heads'."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def banner(cfg, heads, mode, workers, where=""):
    rule = "━" * 66
    if mode == "classic":
        title = (f"Classic Evolution — one population of {cfg.population}, "
                 f"{plural(cfg.generations, 'generation')}, 1.0·flow + 1.2·symmetry + 2.0·creativity")
    else:
        title = (f"Hydra Evolution — {plural(len(heads), 'Head')}, {plural(cfg.cycles, 'Cycle')} × "
                 f"{plural(cfg.generations, 'Generation')}, "
                 f"{plural(cfg.population, 'organism')} per head")
    return [title, f"  {plural(cfg.steps, 'step')} and {plural(cfg.samples, 'name')} per organism, "
                   f"seed {cfg.seed}, {plural(workers, 'worker')}{where}",
            f"  Genes left out of a genome are at their defaults: {at_defaults()}", rule]


def runs_table(runs):
    """Lines of the store's runs, newest first: id, started, status, seed, heads, evaluations,
    the size of its Pareto front, the winner and its held-out loss; a damaged run (its `problem`
    set), its id and why."""
    lines = [f"{'run':>4}  {'started':19}  {'status':11}  {'seed':>10}  {'heads':22}  "
             f"{'evaluations':>11}  {'front':>5}  winner"]
    for r in runs:
        if r.get("problem"):                 # a row the store refused: its id and why
            lines.append(f"{r['id']!s:>4}  damaged: {r['problem']}")
            continue
        heads = ",".join(h.lower() for h in json.loads(r["heads"]))
        winner = "" if r["winner"] is None else (
            f"{r['winner']} (val_loss {r['winner_loss']:.4f})" if r["winner_loss"] is not None
            else r["winner"])
        about = expected_evaluations(r["population"], r["generations"], r["cycles"],
                                     len(json.loads(r["heads"])))
        done = f"{r['done']}" if r["state"] == "completed" else f"{r['done']}/~{about}"
        front = str(r["front"]) if r["front"] else "-"
        lines.append(f"{r['id']:>4}  {r['started']:19}  {r['state']:11}  {r['seed']:>10}  "
                     f"{heads:22}  {done:>11}  {front:>5}  {winner}")
    return lines

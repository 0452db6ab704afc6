"""What a person sees of a Hydra run: the console (stdout, a progress bar on stderr) and the log.

An observer of the engine (microgpt.hydra.Observer), as the store is. Lines go to the run's
log file and to stdout (all of them, or with --quiet only the final table); progress goes to
stderr, only on a terminal.
"""
import json
import math
import sys
import time

from microgpt.hydra import Observer, describe, expected_evaluations


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


class Console(Observer):
    """The command's view of a run: stdout, the human-readable log, a progress bar on stderr."""

    def __init__(self, cfg, heads, log, quiet, progress):
        self.cfg, self.heads, self.log = cfg, heads, log
        self.quiet, self.progress = quiet, progress
        self.width = max(len(h.name) for h in heads) + 2
        self.bar = None
        self.todo, self.done = {}, {}       # per head, this generation

    def say(self, text="", chatter=True):
        """A line for the log, and for stdout unless it is chatter and the run is quiet."""
        self.log.write(text + "\n")
        self.log.flush()
        if not (chatter and self.quiet):
            print(text, flush=True)

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

    def champion_line(self, head, organism):
        tag = f"[{head.name}]".ljust(self.width)
        born = "" if organism.head == head.name else f" (from {organism.head})"
        return (f"{tag} Champion: {describe(organism.genome)} -> "
                f"Score: {show_score(organism.fitness(head.name))} ({head.objective}){born}")

    def generation_started(self, cycle, generation, todo):
        cfg = self.cfg
        self.say(f"Cycle {cycle + 1}/{cfg.cycles} · Generation {generation + 1}/{cfg.generations}"
                 f" ({len(todo)} to evaluate)")
        self.start_bar(todo, f"cycle {cycle + 1}/{cfg.cycles} gen {generation + 1}/{cfg.generations}")

    def start_bar(self, todo, desc):
        """Count this wave's evaluations per head, and show them on a bar (on a terminal)."""
        self.todo = {h.name: sum(o.head == h.name for o in todo) for h in self.heads}
        self.done = dict.fromkeys(self.todo, 0)
        if self.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=len(todo), unit="eval", file=sys.stderr, leave=False, desc=desc,
                            postfix=self.counts())

    def counts(self):
        """'Weaver 3/6  Mirror 2/6  Spark 6/6': this generation's evaluations done per head."""
        return "  ".join(f"{h} {self.done[h]}/{n}" for h, n in self.todo.items())

    def evaluated(self, organism):
        if organism.error is not None:       # its first line: the store keeps the traceback
            why = organism.error.partition("\n")[0]
            self.warn(f"microgpt-hydra: {organism.id} ({describe(organism.genome)}) failed, "
                      f"scored worst: {why}")
        self.done[organism.head] += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts(), refresh=False)
            self.bar.update(1)

    def generation(self, cycle, generation, populations):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for h in self.heads:
            self.say("  " + self.champion_line(h, populations[h.name][0]))

    def gathering(self, cycle, pool, received):
        sizes = sorted({len(v) for v in received.values()})
        took = "/".join(str(n) for n in sizes)
        self.say(f"  >> The Gathering: {len(pool)} champions pooled; each head took in {took} "
                 f"of the others'. The organism learns from all heads.")

    def cycle_done(self, cycle, seconds):
        self.say(f"  Cycle {cycle + 1} took {seconds:.1f}s")
        self.say()

    def final_started(self, organisms, todo, what):
        self.say(f"The final judgement: {plural(len(organisms), 'organism')} ({what}) re-judged "
                 f"({len(todo)} to evaluate)")
        self.start_bar(todo, "final judgement")

    def retrying(self, organisms):
        self.warn(f"microgpt-hydra: a worker process died; retrying {len(organisms)} lost "
                  f"evaluation{'s' if len(organisms) != 1 else ''} in a new pool")

    def ascended(self, evolution, mode, winner, winner_standing, genome):
        """The final table: every head's champion with its names, then the winner."""
        self.close_bar()
        self.say("━" * 66, chatter=False)
        self.say("Hydra Ascended" if mode == "hydra" else "Evolution Complete", chatter=False)
        for h in evolution.heads:
            champion = evolution.champions[h.name]
            self.say("  " + self.champion_line(h, champion), chatter=False)
            self.say(" " * (self.width + 3) + ", ".join(champion.shown_names()), chatter=False)
        loss = "unknown" if genome["loss"] is None else f"{genome['loss']:.4f}"
        scores = ", ".join(f"{h.name} {show_score(winner.fitness(h.name))}" for h in evolution.heads)
        self.say(f"Winner: [{winner.head}] {describe(winner.genome)}, born in generation "
                 f"{genome['generation']} (val_loss {loss})", chatter=False)
        self.say(f"  mean of {plural(genome['trials'], 'trial')}: {scores}; standing "
                 f"{winner_standing:.2f} among the first generation's random genomes", chatter=False)
        if len(evolution.heads) > 1:
            front = evolution.front
            self.say(f"Pareto front: {plural(len(front), 'organism')} that no other beats on every "
                     f"head (kept in the store)", chatter=False)

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
                   f"seed {cfg.seed}, {plural(workers, 'worker')}{where}", rule]


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

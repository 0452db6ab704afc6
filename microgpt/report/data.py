"""What the report reads from a run: the store's records, and the numbers every figure draws.

Nothing here draws or writes; `figure_data` gathers the numbers the page embeds as JSON, so a
test (or a person) can check a figure against the console and the store.
"""
import json
import math
import statistics
from dataclasses import dataclass, field

from microgpt.hydra import (
    GENES,
    GRID_COOLINGS,
    MAX_TRIALS,
    percentile,
    run_generation,
    temperature_grid,
    voices,
)
from microgpt.store import FINAL_JUDGEMENT, PRIMORDIAL, StoreError
from microgpt.train import TrainingConfig


@dataclass
class Run:
    """One stored run: its row, its evaluations (JSON decoded, checked), its Gatherings, each
    generation's champions as the console printed them, and its Pareto front; skipped: why each
    evaluation the store held but could not give was left out."""
    row: dict
    evaluations: list
    gatherings: list
    champions: list = field(default_factory=list)
    front: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    heard: dict = field(default_factory=dict)   # `heard_voices`' scores so far, by evaluation

    @property
    def id(self):
        return self.row["id"]

    @property
    def heads(self):
        return json.loads(self.row["heads"])

    @property
    def per_cycle(self):
        return self.row["generations"]

    @property
    def last_generation(self):
        return self.row["cycles"] * self.per_cycle

    def generation(self, e):
        """The 1-based generation of the run an Evaluation belongs to."""
        return self.run_generation(e.cycle, e.generation)

    def run_generation(self, cycle, generation):
        """The 1-based generation of the run that is generation of cycle (both 1-based)."""
        return run_generation(cycle, generation, self.per_cycle)

    @property
    def title(self):
        state = self.row["state"]
        partial = "" if state == "completed" else f" [{state}: partial]"
        return f"run {self.id} (seed {self.row['seed']}, {', '.join(self.heads)}){partial}"

    def births(self):
        """The organisms' first trials (the primordial creature's aside: nothing bred it)."""
        return [e for e in self.evaluations if e.trial == 1 and e.stage != PRIMORDIAL]

    def primordial(self):
        """The primordial creature's trials (every gene at its default: the run's baseline); []
        for a store from before it was heard."""
        return [e for e in self.evaluations if e.stage == PRIMORDIAL]

    def by_id(self):
        return {e.organism: e for e in self.births()}

    def first_generation(self):
        """The random first generation's births: the yardstick of every standing."""
        return [e for e in self.births() if e.cycle == 1 and e.generation == 1]

    def final(self, e):
        """Whether evaluation e was made by the final judgement: its stage, or for a store from
        before stages, a tuned organism (@) or a trial past the generations' MAX_TRIALS."""
        if e.stage is not None:
            return e.stage == FINAL_JUDGEMENT
        return "@" in e.organism or e.trial > MAX_TRIALS

    def winner_trial(self):
        """The evaluation the run's winner is (its first confirming trial), or None."""
        chosen = self.row.get("winner")
        return next((e for e in self.evaluations if e.organism == chosen), None) if chosen else None

    @property
    def winner(self):
        """The written winner (genome.json's dict), or None."""
        written = json.loads(self.row.get("winner_genome") or "null")
        return written if isinstance(written, dict) else None


def load_run(store, run_id):
    """A Run from the store (run_id None: the newest): a bad evaluation row is skipped and
    counted (the rest is still worth drawing), a bad run row is a StoreError."""
    if run_id is None:
        runs = store.runs()
        if not runs:
            raise StoreError(f"{store.path}: no runs yet")
        run_id = runs[0]["id"]
    row = store.run(run_id)
    row["state"] = store.state(row)
    evaluations, skipped = store.evaluations(row)
    if row["winner_genome"] is not None:
        store.json(row, "winner_genome", row)          # JSON, or one line naming the column
    return Run(row, evaluations, store.gatherings(run_id), store.champions(run_id),
               store.front(run_id), skipped)


def drawable(x):
    """Whether x is a number a figure can place (a diverged loss, inf, is not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def score(e, head):
    """e's score under head, or None when it failed."""
    x = (e.scores or {}).get(head)
    return x if drawable(x) else None


def gene_of(evaluation, gene):
    """The evaluation's value of gene; a run stored before the gene existed had the default."""
    return evaluation.genome.get(gene, getattr(TrainingConfig, gene))


def trial_means(run):
    """{organism: {"scores": {head: mean over its successful trials}, "trials": n, "spread":
    {head: the standard deviation between its trials, None with one}}}, over every evaluation
    the run made (each at the organism's own voice)."""
    trials = {}
    for e in run.evaluations:
        if e.error is None:
            trials.setdefault(e.of, []).append(e)
    out = {}
    for o, es in trials.items():
        scores, spread = {}, {}
        for h in run.heads:
            xs = [x for x in (score(e, h) for e in es) if x is not None]
            scores[h] = statistics.mean(xs) if xs else None
            spread[h] = statistics.stdev(xs) if len(xs) > 1 else None
        out[o] = {"scores": scores, "trials": len(es), "spread": spread}
    return out


def champions(run):
    """[{generation, head, organism, score, stored}]: each head's champion after each
    generation, as the console printed it (the store's champions: the means over its trials so
    far); for a run stored before champions were kept, the best first trial of each generation
    (stored False)."""
    if run.champions:
        return [{"generation": run.run_generation(c["cycle"], c["generation"]), "head": c["head"],
                 "organism": c["organism"], "score": c["scores"].get(c["head"]), "stored": True}
                for c in run.champions]
    out = []
    for g in sorted({run.generation(e) for e in run.births()}):
        for h in run.heads:
            es = [e for e in run.births() if e.head == h and run.generation(e) == g
                  and score(e, h) is not None]
            if es:
                best = max(es, key=lambda e: score(e, h))
                out.append({"generation": g, "head": h, "organism": best.organism,
                            "score": score(best, h), "stored": False})
    return out


def primordial_scores(run):
    """{head: the primordial creature's mean score over its successful trials (None: none)}."""
    trials = run.primordial()
    out = {}
    for h in run.heads:
        xs = [x for x in (score(e, h) for e in trials) if x is not None]
        out[h] = statistics.mean(xs) if xs else None
    return out


def best_so_far(points):
    """The running maximum of [(x, y)] (y None skipped), as [(x, best)]."""
    out, best = [], None
    for x, y in points:
        if y is not None:
            best = y if best is None else max(best, y)
        if best is not None:
            out.append((x, best))
    return out


def reference_scores(run):
    """{head: the random first generation's scores, sorted}: what a standing is measured in."""
    first = run.first_generation()
    return {h: sorted(x for x in (score(e, h) for e in first) if x is not None) for h in run.heads}


def standing(scores, reference):
    """The mean over the heads of the share of the random first generation each score beats (ties
    half): a birth's standing on one trial, for slices and importances (the run's own standing
    also weighs the noise of a trial; `microgpt.hydra.standing_key`)."""
    shares = [percentile(scores[h], xs) for h, xs in reference.items()
              if xs and scores.get(h) is not None]
    return statistics.mean(shares) if shares else None


def heard_voices(run):
    """[(temperature of the first letter, cooling, standing)] for every voice the run heard a
    trained model at (each evaluation samples at several: `microgpt.hydra.voices` during the
    generations, `temperature_grid` in the final judgement), its names scored again here with the
    run's heads (no training); which voices an evaluation heard is known from its genome and
    the number of samples it holds. [] when the run's names cannot be read now or a head does
    not score names (Origin). The scores are kept in run.heard, which a watch carries from one
    reading of the run to the next, so each evaluation is heard once."""
    from microgpt.errors import MicrogptError
    from microgpt.heads import make_heads
    from microgpt.train import load_names

    if None not in run.heard:        # the heads, once (a watched run's Run carries them over)
        try:
            heads = make_heads([h.lower() for h in run.heads], load_names(run.row["data"]),
                               run.row.get("scoring") or "counted")
        except (MicrogptError, OSError, KeyError):
            heads = []
        run.heard[None] = [] if any(h.name == "Origin" for h in heads) else heads
    heads = run.heard[None]
    if not heads:
        return []
    ref = reference_scores(run)
    out = []
    for e in run.evaluations:
        if e.error is not None or not e.names_at:
            continue
        key = (e.organism, e.seed, len(e.names_at))
        if key not in run.heard:
            run.heard[key] = _heard(e, heads)
        out += [(t, c, standing(scores, ref)) for t, c, scores in run.heard[key]]
    return [p for p in out if p[2] is not None]


def _heard(e, heads):
    """[(temperature, cooling, {head: score})] of each voice evaluation e was heard at."""
    g = e.genome
    grids = (voices(g), temperature_grid(g), temperature_grid(g, GRID_COOLINGS))
    heard = next((grid for grid in grids if len(grid) == len(e.names_at)), None)
    out = []
    for v, names in zip(heard or (), e.names_at):
        t, c = v if isinstance(v, (tuple, list)) else (v, g["cooling"])
        out.append((t, c, {h.name: h.score(names) for h in heads}))
    return out


def importance(run):
    """{gene: the share of the births' standing's variance that the gene's value explains}: the
    correlation ratio (eta squared) of standing on the gene's values, whole-number genes by
    value, the others in five bins of equal count. A plain, one-gene-at-a-time measure (no
    interactions; fANOVA would need a model of the whole space): a gene that varied little in
    the run cannot explain much."""
    ref = reference_scores(run)
    points = [(e, standing(e.scores, ref)) for e in run.births()]
    points = [(e, s) for e, s in points if s is not None]
    if len(points) < 3:
        return {g: 0.0 for g in GENES}
    ys = [s for _, s in points]
    mean = statistics.mean(ys)
    total = sum((y - mean) ** 2 for y in ys)
    out = {}
    for gene in GENES:
        values = [gene_of(e, gene) for e, _ in points]
        groups = {}
        for v, y in zip(values, ys):
            groups.setdefault(_bin(v, values), []).append(y)
        between = sum(len(g) * (statistics.mean(g) - mean) ** 2 for g in groups.values())
        out[gene] = between / total if total > 0 else 0.0
    return out


def _bin(v, values, bins=5):
    """v itself when the values are few (a whole-number gene), else its quantile bin."""
    distinct = sorted(set(values))
    if len(distinct) <= 8:
        return v
    return min(bins - 1, sum(x < v for x in values) * bins // len(values))


def lineage(run):
    """The winner's ancestors, oldest first: dicts of organism, head, generation, score (the
    mean over its trials under the winner's head), spread (the standard deviation between its
    trials, None with one), trials, the genes its mutation changed (None: a new organism), and
    the Gathering at which it went over to the head that bred its child (or None). When the
    final judgement changed genes of the winner's birth (tuned them, or chose another voice),
    the winner follows as one more step, with `final` set and its score the mean over its
    confirming trials."""
    winner = _winner_birth(run)
    if winner is None:
        return []
    births, means = run.by_id(), trial_means(run)
    head = winner.head
    chain, e, seen = [], winner, set()
    while e is not None:
        seen.add(e.organism)
        parent = births.get(e.parent) if e.parent else None
        if parent is not None and parent.organism in seen:     # a tampered store's loop
            parent = None
        changed = [k for k in GENES if gene_of(parent, k) != gene_of(e, k)] if parent else None
        m = means.get(e.organism, {"scores": {}, "spread": {}, "trials": 0})
        chain.append({"organism": e.organism, "head": e.head, "generation": run.generation(e),
                      "score": m["scores"].get(head), "spread": m["spread"].get(head),
                      "trials": m["trials"], "changed": changed, "gathering": None})
        e = parent
    chain.reverse()
    for a, child in zip(chain, chain[1:]):
        if child["head"] != a["head"]:
            a["gathering"] = next((g["cycle"] for g in run.gatherings if g["organism"] == a["organism"]
                                   and g["head"] == child["head"]), None)
            a["to"] = child["head"]
    final = _final_step(run, winner)
    return chain + [final] if final else chain


def _final_step(run, birth):
    """The lineage's last step when the written winner's genes differ from its birth's, or None."""
    written = run.winner
    if written is None:
        return None
    changed = [k for k in GENES if k in written and written[k] != gene_of(birth, k)]
    if not changed:
        return None
    scores = written.get("scores")
    mean = scores.get(birth.head) if isinstance(scores, dict) else None
    return {"organism": run.winner_trial().of, "head": birth.head,
            "generation": run.last_generation + 1, "score": mean if drawable(mean) else None,
            "spread": None, "changed": changed, "gathering": None, "final": True,
            "trials": written.get("trials"), "standing": written.get("standing")}


def _winner_birth(run):
    """The winner's birth: the birth of the island, cycle, generation and place the winner's
    organism was bred at (before any final tuning), or None."""
    w = run.winner_trial()
    return next((e for e in run.births() if (e.head, e.cycle, e.generation, e.idx)
                 == (w.head, w.cycle, w.generation, w.idx)), None) if w else None


def changes(a):
    """'new', 'no gene changed', 'changed lr, n_ctx' or 'final judgement: n_ctx, temperature',
    for one step of the lineage."""
    if a.get("final"):
        return "final judgement: " + ", ".join(a["changed"])
    if a["changed"] is None:
        return "new"
    return "changed " + ", ".join(a["changed"]) if a["changed"] else "no gene changed"


def verdict(run):
    """What the page says first: {winner: genome.json's dict or None, standing, per head the
    winner's mean score, the random first generation's median and best and the primordial
    creature's mean, evaluations, failed, seconds}."""
    ref, first = reference_scores(run), primordial_scores(run)
    w = run.winner
    heads = {}
    for h in run.heads:
        xs = ref[h]
        heads[h] = {"winner": (w or {}).get("scores", {}).get(h) if w else None,
                    "random median": statistics.median(xs) if xs else None,
                    "random best": xs[-1] if xs else None, "primordial": first[h]}
    seconds = sum(e.seconds for e in run.evaluations if drawable(e.seconds))
    return {"winner": w, "standing": (w or {}).get("standing"), "heads": heads,
            "evaluations": len(run.evaluations),
            "failed": sum(e.error is not None for e in run.evaluations),
            "final": sum(run.final(e) for e in run.evaluations), "seconds": seconds,
            "front": len(run.front), "primordial trials": len(run.primordial())}


def figure_data(run):
    """The numbers the figures draw, for the page's embedded JSON: the champions per generation
    (the console's), the winner, the baselines (the random first generation per head, the
    primordial creature's means), the front, the importances and the lineage."""
    return {"run": run.id, "state": run.row["state"], "heads": run.heads,
            "champions": champions(run), "verdict": verdict(run),
            "baseline": {"random first generation": reference_scores(run),
                         "primordial creature": primordial_scores(run)},
            "front": [f["organism"] for f in run.front], "importance": importance(run),
            "lineage": lineage(run)}

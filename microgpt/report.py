"""`microgpt-hydra report`: pictures of a run, read from the store; nothing is run again.

Follows Optuna's visualizations (the plots only read the storage): for a run, or two side by side,
it writes each figure as a PNG and one self-contained HTML page (the figures embedded as data:
URLs, no script or style from anywhere else, so it opens from file:// with no network), and
prints a terminal summary: the run, each head's champion per generation, the winner's lineage.

Figures (matplotlib, headless Agg backend; every head keeps one colour in every figure):
  fitness    each head's best and median score per generation, the Gatherings marked
  loss       every evaluation's held-out loss against its parameter count, the winner marked
  genes      each gene over the generations, per head
  lineage    the winner's ancestors: the gene each mutation changed, the score each reached, the
             Gathering that brought one in from another head, and the genes the final
             judgement changed (tuned, or the temperature it heard the winner best at)
  time       seconds per evaluation against model size; failed evaluations marked
  compare    (two runs) their fitness curves overlaid, head by head
"""
import base64
import html
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from microgpt.errors import UsageError
from microgpt.files import writable_target, write_atomic
from microgpt.hydra import GENES, SPACE
from microgpt.store import Store, StoreError
from microgpt.train import TrainingConfig

COLOURS = {"Weaver": "#1f77b4", "Mirror": "#9467bd", "Spark": "#ff7f0e", "Origin": "#2ca02c",
           "Classic": "#8c564b"}
WIDTH, HEIGHT, DPI = 9.0, 4.5, 100          # inches; every PNG is 900 x 450 pixels
GENE_LABELS = {g.name: g.about for g in SPACE}


@dataclass
class Run:
    """One stored run: its row, its evaluations (JSON decoded, checked) and its Gatherings;
    skipped: why each evaluation the store held but could not give was left out."""
    row: dict
    evaluations: list
    gatherings: list
    skipped: list = field(default_factory=list)

    @property
    def id(self):
        return self.row["id"]

    @property
    def heads(self):
        return json.loads(self.row["heads"])

    @property
    def per_cycle(self):
        return self.row["generations"]

    def generation(self, e):
        """The 1-based generation of the run an evaluation belongs to."""
        return (e["cycle"] - 1) * self.per_cycle + e["generation"]

    @property
    def title(self):
        state = self.row["state"]
        partial = "" if state == "completed" else f" [{state}: partial]"
        return f"run {self.id} (seed {self.row['seed']}, {', '.join(self.heads)}){partial}"

    def births(self):
        return [e for e in self.evaluations if e["trial"] == 1]

    def by_id(self):
        return {e["organism"]: e for e in self.births()}


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
    gatherings = store.gatherings(run_id)
    if row["winner_genome"] is not None:
        store.json(row, "winner_genome", row)          # JSON, or one line naming the column
    return Run(row, evaluations, gatherings, skipped)


def drawable(x):
    """Whether x is a number a figure can place (a diverged loss, inf, is not)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def score(e, head):
    """e's score under head, or None when it failed."""
    x = (e["scores"] or {}).get(head)
    return x if x is not None and math.isfinite(x) else None


# The figures.

def _figure(nrows=1, ncols=1, **kw):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def fitness_curves(run):
    """(generations, {head: (best per generation, median per generation)}): None where a head
    has no scored birth in a generation."""
    gens = sorted({run.generation(e) for e in run.births()})
    curves = {}
    for h in run.heads:
        best, median = [], []
        for g in gens:
            xs = [x for e in run.births() if e["head"] == h and run.generation(e) == g
                  for x in [score(e, h)] if x is not None]
            best.append(max(xs) if xs else None)
            median.append(statistics.median(xs) if xs else None)
        curves[h] = (best, median)
    return gens, curves


def _gathering_lines(ax, run):
    for c in sorted({g["cycle"] for g in run.gatherings}):
        ax.axvline(c * run.per_cycle + 0.5, color="0.6", linestyle=":", linewidth=1)
    if run.gatherings:
        ax.plot([], [], color="0.6", linestyle=":", label="Gathering")


def plot_fitness(run):
    gens, curves = fitness_curves(run)
    fig, axes = _figure(1, len(run.heads))
    for ax, h in zip(axes[0], run.heads):
        best, median = curves[h]
        ax.plot(gens, best, marker="o", color=COLOURS.get(h), label="best")
        ax.plot(gens, median, linestyle="--", color=COLOURS.get(h), alpha=0.6, label="median")
        _gathering_lines(ax, run)
        ax.set_title(f"{h}")
        ax.set_xlabel("generation")
        ax.set_ylabel("score (mean per name)")
        ax.legend(fontsize="small")
    fig.suptitle(f"Fitness per generation, {run.title}")
    return fig


def plot_loss(run):
    fig, axes = _figure()
    ax = axes[0][0]
    for h in run.heads:
        es = [e for e in run.births() if e["head"] == h and drawable(e["val_loss"])
              and e["num_params"] is not None]
        ax.scatter([e["num_params"] for e in es], [e["val_loss"] for e in es], s=14, alpha=0.6,
                   color=COLOURS.get(h), label=h)
    chosen = run.row.get("winner")             # the winner's own evaluation (after any tuning)
    winner = next((e for e in run.evaluations if e["organism"] == chosen), None)
    if winner is not None and drawable(winner["val_loss"]) and winner["num_params"] is not None:
        ax.scatter([winner["num_params"]], [winner["val_loss"]], s=160, marker="*",
                   color="gold", edgecolor="black", zorder=5, label="winner")
    _log_scale(ax.set_xscale, [e["num_params"] for e in run.births() if e["num_params"]])
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("held-out loss (nats per token)")
    ax.set_title(f"Held-out loss against size, every evaluation, {run.title}")
    ax.legend(fontsize="small")
    return fig


def plot_genes(run):
    columns = 3
    rows = -(-(len(GENES) + 1) // columns)          # a cell per gene of the table, and the legend's
    fig, axes = _figure(rows, columns)
    cells = axes.ravel()
    for ax, gene in zip(cells, GENES):
        for h in run.heads:
            es = [e for e in run.births() if e["head"] == h]
            gens = sorted({run.generation(e) for e in es})
            medians = [statistics.median(gene_of(e, gene) for e in es if run.generation(e) == g)
                       for g in gens]
            ax.plot(gens, medians, marker=".", color=COLOURS.get(h), label=h)
        ax.set_title(GENE_LABELS[gene], fontsize="small")
        ax.set_xlabel("generation", fontsize="small")
        ax.tick_params(labelsize="x-small")
        if gene == "lr":
            _log_scale(ax.set_yscale, [gene_of(e, gene) for e in run.births()])
    for ax in cells[len(GENES):]:                   # the cells after the genes; the last a legend
        ax.axis("off")
    handles, labels = cells[0].get_legend_handles_labels()
    cells[-1].legend(handles, labels, loc="center", title="median per head")
    fig.suptitle(f"The genes over the generations, {run.title}")
    return fig


def gene_of(evaluation, gene):
    """The evaluation's value of gene; a run stored before the gene existed had the default."""
    return evaluation["genome"].get(gene, getattr(TrainingConfig, gene))


def lineage(run):
    """The winner's ancestors, oldest first: dicts of organism, head, generation, score under the
    winner's head, the genes its mutation changed (None: a new organism), and the Gathering at
    which it went over to the head that bred its child (or None). When the final judgement
    changed genes of the winner's birth (tuned them, or chose another temperature), the winner
    follows as one more step, a generation after the last, with `final` set and its score the
    mean over its trials."""
    winner = _winner_birth(run)
    if winner is None:
        return []
    births = run.by_id()
    head = winner["head"]
    chain, e, seen = [], winner, set()
    while e is not None:
        seen.add(e["organism"])
        parent = births.get(e["parent"]) if e["parent"] else None
        if parent is not None and parent["organism"] in seen:     # a tampered store's loop
            parent = None
        changed = [k for k in GENES if gene_of(parent, k) != gene_of(e, k)] if parent else None
        chain.append({"organism": e["organism"], "head": e["head"], "generation": run.generation(e),
                      "score": score(e, head), "changed": changed, "gathering": None})
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
    written = json.loads(run.row.get("winner_genome") or "null")
    if not isinstance(written, dict):
        return None
    changed = [k for k in GENES if k in written and written[k] != gene_of(birth, k)]
    if not changed:
        return None
    scores = written.get("scores")
    mean = scores.get(birth["head"]) if isinstance(scores, dict) else None
    last = max(run.generation(e) for e in run.births())
    return {"organism": run.row["winner"].split("/")[0], "head": birth["head"],
            "generation": last + 1, "score": mean if drawable(mean) else None,
            "changed": changed, "gathering": None, "final": True,
            "trials": written.get("trials"), "standing": written.get("standing")}


def changes(a):
    """'new', 'no gene changed', 'changed lr, n_ctx' or 'final judgement: n_ctx, temperature',
    for one step of the lineage."""
    if a.get("final"):
        return "final judgement: " + ", ".join(a["changed"])
    if a["changed"] is None:
        return "new"
    return "changed " + ", ".join(a["changed"]) if a["changed"] else "no gene changed"


def _standing(final):
    """'; standing 0.74' for the final step of a lineage whose winner has one, else ''."""
    x = final.get("standing")
    return f"; standing {x:.2f}" if isinstance(x, (int, float)) and math.isfinite(x) else ""


def plot_lineage(run):
    fig, axes = _figure()
    ax = axes[0][0]
    chain = lineage(run)
    head = chain[-1]["head"] if chain else None
    xs = [a["generation"] for a in chain]
    ys = [a["score"] if a["score"] is not None else float("nan") for a in chain]
    ax.plot(xs, ys, color="0.5", zorder=1)
    for a, x, y in zip(chain, xs, ys):
        final = a.get("final")
        ax.scatter([x], [y], s=160 if final else 60, marker="*" if final else "o",
                   color=COLOURS.get(a["head"]), zorder=2)
        label = changes(a).replace("changed ", "").replace(": ", ":\n")
        if final:
            label += f"\n(mean of {a['trials']} trials{_standing(a)})"
        if a["gathering"]:
            label += f"\n(to {a['to']} at Gathering {a['gathering']})"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 8), ha="center",
                    fontsize="x-small")
    for h in run.heads:
        ax.scatter([], [], color=COLOURS.get(h), label=f"bred by {h}")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"score under {head} (first trial; the winner: mean)" if head else "score")
    ax.set_title(f"The winner's lineage: the gene each mutation changed, {run.title}"
                 if chain else f"No winner yet, {run.title}")
    ax.legend(fontsize="small")
    ax.margins(x=0.08, y=0.25)
    return fig


def plot_time(run):
    fig, axes = _figure()
    ax = axes[0][0]
    for h in run.heads:
        es = [e for e in run.evaluations if e["head"] == h and drawable(e["seconds"])
              and e["num_params"] is not None]
        ax.scatter([e["num_params"] for e in es], [e["seconds"] for e in es], s=14, alpha=0.6,
                   color=COLOURS.get(h), label=h)
    failed = [e for e in run.evaluations if e["error"] is not None]
    if failed:
        y = max([e["seconds"] for e in run.evaluations if drawable(e["seconds"])] or [1.0])
        ax.scatter([_params(e["genome"]) for e in failed], [y] * len(failed), marker="x", s=50,
                   color="red", label=f"failed ({len(failed)})")
    _log_scale(ax.set_xscale, [e["num_params"] for e in run.evaluations if e["num_params"]]
               + [_params(e["genome"]) for e in failed])
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("seconds per evaluation")
    total = sum(e["seconds"] for e in run.evaluations if drawable(e["seconds"]))
    ax.set_title(f"Where the time went: {total:.0f} s of evaluations, {run.title}")
    ax.legend(fontsize="small")
    return fig


def plot_compare(a, b):
    heads = [h for h in a.heads if h in b.heads] or a.heads
    fig, axes = _figure(1, len(heads))
    for ax, h in zip(axes[0], heads):
        for run, style in ((a, "-"), (b, "--")):
            gens, curves = fitness_curves(run)
            if h in curves:
                ax.plot(gens, curves[h][0], linestyle=style, marker="o", markersize=3,
                        color=COLOURS.get(h), label=f"run {run.id} best")
        ax.set_title(h)
        ax.set_xlabel("generation")
        ax.set_ylabel("best score")
        ax.legend(fontsize="small")
    fig.suptitle(f"Run {a.id} (solid) and run {b.id} (dashed), head by head")
    return fig


def _log_scale(set_scale, values):
    """A log scale on that axis, when it has something to draw (an empty one cannot be logged)."""
    if any(drawable(x) and x > 0 for x in values):
        set_scale("log")


def _params(genome):
    """About how many parameters a genome has (vocab 27), for failed evaluations."""
    e, f = genome["n_emb"], genome["n_ff_exp"]
    return 2 * 27 * e + genome["n_ctx"] * e + genome["n_layer"] * (4 * e * e + 2 * f * e * e)


def _winner_birth(run):
    """The winner's birth: the organism whose trial (/t..) it is, before any final tuning (@..)."""
    winner = run.row.get("winner")
    return run.by_id().get(winner.split("/")[0].split("@")[0]) if winner else None


# The summary and the page.

def summary(run):
    """The terminal summary's lines."""
    r = run.row
    lines = [f"Run {run.id}: {r['state']}, {r['mode']}, seed {r['seed']}, heads "
             f"{', '.join(run.heads)}; {len(run.evaluations)} evaluations "
             f"({sum(e['error'] is not None for e in run.evaluations)} failed), started {r['started']}"]
    for h in run.heads:
        lines.append(f"  {h}: champion per generation")
        for g in sorted({run.generation(e) for e in run.births()}):
            es = [e for e in run.births() if e["head"] == h and run.generation(e) == g
                  and score(e, h) is not None]
            if es:
                best = max(es, key=lambda e: score(e, h))
                lines.append(f"    generation {g:>2}: {best['organism']:20} {score(best, h):7.2f}")
    chain = lineage(run)
    if chain:
        lines.append(f"  The winner's lineage ({r['winner']}):")
        for a in chain:
            shown = "failed" if a["score"] is None else f"{a['score']:.2f}"
            if a.get("final"):
                lines.append(f"    final judgement: {a['organism']} changed {', '.join(a['changed'])};"
                             f" score {shown} (mean of {a['trials']} trials{_standing(a)})")
                continue
            how = changes(a)
            via = f", went over to {a['to']} at Gathering {a['gathering']}" if a["gathering"] else ""
            lines.append(f"    generation {a['generation']:>2}: {a['organism']:20} {how}{via}; "
                         f"score {shown}")
    else:
        lines.append("  No winner yet.")
    if run.skipped:
        lines.append(f"  {len(run.skipped)} evaluation(s) skipped, the store cannot give them; the "
                     f"first: {run.skipped[0]}")
    return lines


def figures(runs):
    """[(file stem, title, matplotlib Figure)] for one run, or for two (the first's own, then
    the comparison)."""
    run = runs[0]
    out = [("fitness", "Fitness per generation", plot_fitness(run)),
           ("loss", "Held-out loss against size", plot_loss(run)),
           ("genes", "The genes over the generations", plot_genes(run)),
           ("lineage", "The winner's lineage", plot_lineage(run)),
           ("time", "Where the time went", plot_time(run))]
    if len(runs) == 2:
        out.append(("compare", f"Run {runs[0].id} and run {runs[1].id}", plot_compare(*runs)))
    return out


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}
figure{{margin:2em 0}} img{{max-width:100%;height:auto;border:1px solid #ddd}}
pre{{background:#f6f6f6;padding:1em;overflow:auto;font-size:85%}}</style></head>
<body><h1>{title}</h1><pre>{summary}</pre>
{figures}
<script>
// each figure notes the size it rendered at, for a check in a headless browser
window.addEventListener("load", function () {{
  document.querySelectorAll("img").forEach(function (img) {{
    img.dataset.rendered = img.getBoundingClientRect().width + "x" + img.getBoundingClientRect().height;
  }});
}});
</script></body></html>
"""


def write_report(runs, directory):
    """Write the PNGs and report.html into directory, each as genome.json is written
    (microgpt.files: regular files only, a replaced one kept): the paths written."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--out {directory}: is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {directory}: cannot create it ({exc.strerror})") from None
    drawn = figures(runs)
    paths = [directory / "report.html", *(directory / f"{stem}.png" for stem, _, _ in drawn)]
    for path in paths:                  # every one checked before any is written
        writable_target(path, "--out")
    blocks, files = [], []
    for (stem, title, fig), path in zip(drawn, paths[1:]):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
        files.append((path, buf.getvalue()))
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        blocks.append(f'<figure><img id="{stem}" alt="{html.escape(title)}" width="{int(WIDTH * DPI)}"'
                      f' height="{int(HEIGHT * DPI)}" src="data:image/png;base64,{data}">'
                      f"<figcaption>{html.escape(title)}</figcaption></figure>")
    text = "\n".join(line for run in runs for line in summary(run))
    title = "microgpt-hydra report: " + " and ".join(r.title for r in runs)
    page = PAGE.format(title=html.escape(title), summary=html.escape(text), figures="\n".join(blocks))
    kept = []
    for path, data in [*files, (paths[0], page.encode("utf-8"))]:
        _, old = write_atomic(path, data, "--out")
        if old is not None:
            kept.append(old)
    return paths, kept


def report(store_path, run_ids, out=None):
    """Read the runs from the store, write the report, and return (summary lines, paths: the
    page first)."""
    import matplotlib

    matplotlib.use("Agg")
    store = Store(store_path, readonly=True)
    try:
        runs = [load_run(store, r) for r in (run_ids or [None])]
    finally:
        store.close()
    directory = Path(out) if out is not None else (
        Path(store_path).parent / f"report-{'-'.join(str(r.id) for r in runs)}")
    paths, kept = write_report(runs, directory)
    lines = [line for run in runs for line in summary(run)]
    lines += [f"Replaced a file that was there; it is kept as {k}" for k in kept]
    return lines, paths

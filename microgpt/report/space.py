"""The figures of the search space: what the heads traded (the Pareto front), which genes
mattered, standing against each gene, and temperature x cooling."""
import random

from microgpt.hydra import GENES
from microgpt.report.data import (
    drawable,
    gene_of,
    heard_voices,
    importance,
    reference_scores,
    standing,
    trial_means,
)
from microgpt.report.draw import (
    COLOURS,
    GENE_LABELS,
    PRIMORDIAL_MARK,
    WHOLE,
    WINNER,
    empty,
    figure,
    grid,
    log_scale,
)
from microgpt.store import PRIMORDIAL


def plot_front(run):
    """The heads' trade-off: every organism's trial means, two heads at a time, the run's Pareto
    front (no organism beats it on every head) drawn over it, the winner starred."""
    pairs = [(a, b) for i, a in enumerate(run.heads) for b in run.heads[i + 1:]]
    fig, axes = figure(1, max(1, len(pairs)))
    means = trial_means(run)
    front = {f["organism"] for f in run.front}
    winner = run.winner
    if not pairs:
        empty(axes[0][0], "one head: no trade-off to draw")
    first = means.pop(PRIMORDIAL, None)
    for ax, (a, b) in zip(axes[0], pairs):
        pts = [(m["scores"][a], m["scores"][b], o in front) for o, m in means.items()
               if m["scores"][a] is not None and m["scores"][b] is not None]
        ax.scatter([x for x, _, f in pts if not f], [y for _, y, f in pts if not f], s=8,
                   color="0.7", label="organisms")
        ax.scatter([x for x, _, f in pts if f], [y for _, y, f in pts if f], s=16,
                   color="crimson", label=f"Pareto front ({len(front)})")
        if first and drawable(first["scores"][a]) and drawable(first["scores"][b]):
            ax.scatter([first["scores"][a]], [first["scores"][b]], **PRIMORDIAL_MARK,
                       label="primordial creature")
        if winner and isinstance(winner.get("scores"), dict):
            wa, wb = winner["scores"].get(a), winner["scores"].get(b)
            if drawable(wa) and drawable(wb):
                ax.scatter([wa], [wb], **WINNER, label="winner")
        ax.set_xlabel(a)
        ax.set_ylabel(b)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize="x-small")
    fig.suptitle(f"What the heads traded: trial means, two heads at a time, {run.title}",
                 fontsize="medium")
    return fig


def plot_fronts(a, b):
    """Two runs' Pareto fronts (each organism's trial means, as stored), two shared heads at a
    time, and their winners: which run's trade-offs reach further."""
    heads = [h for h in a.heads if h in b.heads]
    pairs = [(x, y) for i, x in enumerate(heads) for y in heads[i + 1:]]
    fig, axes = figure(1, max(1, len(pairs)))
    if not pairs:
        empty(axes[0][0], "fewer than two heads in common: no trade-off to compare")
    for ax, (x, y) in zip(axes[0], pairs):
        for run, filled in ((a, True), (b, False)):
            pts = [(f["scores"].get(x), f["scores"].get(y)) for f in run.front]
            pts = [(p, q) for p, q in pts if drawable(p) and drawable(q)]
            colour = "crimson" if filled else "teal"
            ax.scatter([p for p, _ in pts], [q for _, q in pts], s=16,
                       color=colour if filled else "none", edgecolor=colour,
                       label=f"run {run.id}: front ({len(pts)})")
            w = (run.winner or {}).get("scores")
            if isinstance(w, dict) and drawable(w.get(x)) and drawable(w.get(y)):
                star = dict(WINNER) if filled else dict(WINNER, s=420, color="none",
                                                          edgecolor=colour, linewidth=1.5)
                ax.scatter([w[x]], [w[y]], **star, label=f"run {run.id}: winner")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize="x-small")
    fig.suptitle(f"The Pareto fronts of run {a.id} (filled) and run {b.id} (hollow), "
                 f"trial means", fontsize="medium")
    return fig


def plot_importance(run):
    """How much of the births' standing each gene explains (eta squared; `data.importance`)."""
    fig, axes = figure()
    ax = axes[0][0]
    shares = importance(run)
    order = sorted(shares, key=shares.get)
    ax.barh([GENE_LABELS[g] for g in order], [shares[g] for g in order], color="#4c72b0")
    for k, g in enumerate(order):
        ax.text(shares[g], k, f" {shares[g]:.2f}", va="center", fontsize="small")
    ax.set_xlim(0, max(0.05, max(shares.values(), default=0) * 1.2))
    ax.set_xlabel("share of the variance of a birth's standing explained by the gene alone")
    ax.set_title(f"Which genes mattered (one at a time), {run.title}", fontsize="medium")
    return fig


def plot_slices(run):
    """A birth's standing (the mean share of the random first generation it beats) against each
    gene: where in the gene's range the good organisms are."""
    rows, columns = grid(len(GENES))
    fig, axes = figure(rows, columns, sharey=True)
    cells = axes.ravel()
    ref = reference_scores(run)
    rng = random.Random(0)                        # the same jitter on every drawing
    points = [(e, standing(e.scores, ref)) for e in run.births()]
    points = [(e, s) for e, s in points if s is not None]
    for ax, gene in zip(cells, GENES):
        for h in run.heads:
            es = [(e, s) for e, s in points if e.head == h]
            jitter = (lambda: rng.uniform(-0.15, 0.15)) if gene in WHOLE else (lambda: 0.0)
            ax.scatter([gene_of(e, gene) + jitter() for e, _ in es], [s for _, s in es], s=5,
                       alpha=0.5, color=COLOURS.get(h), label=h)
        ax.set_title(GENE_LABELS[gene], fontsize="small")
        ax.tick_params(labelsize="x-small")
        if gene == "lr":
            log_scale(ax.set_xscale, [gene_of(e, gene) for e, _ in points])
    for ax in cells[len(GENES):]:
        ax.axis("off")
    handles, labels = cells[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(run.heads), fontsize="small")
    fig.supylabel("standing (one trial)", fontsize="small")
    fig.suptitle(f"Standing against each gene, every birth, {run.title}", fontsize="medium")
    return fig


def plot_voices(run):
    """Temperature x cooling: the mean standing of every voice the run heard its models at
    (hexagons; `data.heard_voices`), the winner's voice starred. How a model speaks moves its
    scores as much as how it was built."""
    fig, axes = figure()
    ax = axes[0][0]
    pts = heard_voices(run)
    if pts:
        import numpy

        shown = ax.hexbin([t for t, _, _ in pts], [c for _, c, _ in pts], C=[s for _, _, s in pts],
                          gridsize=(28, 8), xscale="log", reduce_C_function=numpy.mean,
                          cmap="viridis", vmin=0, vmax=1, mincnt=1)
        fig.colorbar(shown, ax=ax, label="mean standing (one trial each)")
        from matplotlib.ticker import FormatStrFormatter

        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize="x-small")
    else:
        empty(ax, "the run's names cannot be read here, or a head does not score names")
    w = run.winner
    if w and drawable(w.get("temperature")) and drawable(w.get("cooling")):
        ax.scatter([w["temperature"]], [w["cooling"]], **WINNER, label="the winner's voice")
        ax.legend(fontsize="small", loc="lower left")
    ax.set_xlabel("temperature of the first letter (log scale)")
    ax.set_ylabel("cooling (temperature x this, by letter)")
    ax.set_title(f"Temperature x cooling: {len(pts)} voices heard, {run.title}", fontsize="medium")
    return fig

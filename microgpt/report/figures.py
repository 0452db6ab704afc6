"""The run's figures, each a matplotlib Figure of WIDTH x HEIGHT inches, drawn from a `Run`.

Every head keeps one colour in every figure; the winner is a gold star wherever it is drawn; the
random first generation (the yardstick of every standing) is the baseline where a score is.
"""
import statistics

from microgpt.hydra import GENES, percentile
from microgpt.report.data import (
    best_so_far,
    champions,
    changes,
    drawable,
    gene_of,
    lineage,
    primordial_scores,
    reference_scores,
    score,
)
from microgpt.report.draw import (
    COLOURS,
    GENE_LABELS,
    PRIMORDIAL_LINE,
    PRIMORDIAL_MARK,
    WHOLE,
    WINNER,
    empty,
    figure,
    grid,
    log_scale,
    whole_ticks,
)
from microgpt.report.space import (
    plot_front,
    plot_fronts,
    plot_importance,
    plot_slices,
    plot_voices,
)
from microgpt.store import PRIMORDIAL


def _gathering_lines(ax, run):
    for c in sorted({g["cycle"] for g in run.gatherings}):
        ax.axvline(c * run.per_cycle + 0.5, color="0.6", linestyle=":", linewidth=1)
    if run.gatherings:
        ax.plot([], [], color="0.6", linestyle=":", label="Gathering")


def plot_fitness(run):
    """Per head: every birth's first trial (dots), the champion after each generation as the
    console prints it (the mean over its trials), the best champion so far, the random first
    generation's spread, the primordial creature's mean (every gene at its default), and the
    winner's mean over its confirming trials."""
    champs, ref, winner = champions(run), reference_scores(run), run.winner
    first = primordial_scores(run)
    fig, axes = figure(1, len(run.heads))
    last = run.last_generation
    for ax, h in zip(axes[0], run.heads):
        births = [(run.generation(e), score(e, h)) for e in run.births() if e.head == h]
        ax.scatter([g for g, x in births if x is not None], [x for _, x in births if x is not None],
                   s=6, color=COLOURS.get(h), alpha=0.25, label="births (one trial)")
        if ref[h]:
            lo, hi = ref[h][0], ref[h][-1]
            ax.axhspan(lo, hi, color="0.85", zorder=0, label="random first generation")
            ax.axhline(statistics.median(ref[h]), color="0.5", linewidth=1, zorder=0)
        if first[h] is not None:
            ax.axhline(first[h], **PRIMORDIAL_LINE, label="primordial creature (defaults)")
        line = [(c["generation"], c["score"]) for c in champs if c["head"] == h]
        ax.plot([g for g, _ in line], [x for _, x in line], marker="o", markersize=3,
                color=COLOURS.get(h), label="champion (trial mean)")
        best = best_so_far(line)
        ax.step([g for g, _ in best], [x for _, x in best], where="post", color="black",
                linewidth=1, linestyle="--", label="best so far")
        w = (winner or {}).get("scores", {}).get(h)
        if drawable(w):
            ax.scatter([last + 1], [w], **WINNER, label="winner (confirmed)")
        _gathering_lines(ax, run)
        ax.set_title(h)
        whole_ticks(ax.xaxis)
        ax.set_xlabel("generation (then the winner)")
        ax.set_ylabel("score")
    _shared_legend(fig, axes[0][0])
    source = "" if any(c["stored"] for c in champs) else " (best births: no champions stored)"
    fig.suptitle(f"Champions per generation, as the console prints them{source}, {run.title}",
                 fontsize="medium")
    return fig


def _shared_legend(fig, ax, ncol=4):
    """One legend for the figure, below its panels, from ax's labelled artists (none: nothing)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize="x-small")


def plot_loss(run):
    """Held-out loss against size for every successful evaluation (births filled, re-judgings
    hollow), the primordial creature's mean and the winner's: the loss is not what the run
    selects on."""
    fig, axes = figure()
    ax = axes[0][0]
    for h in run.heads:
        es = [e for e in run.evaluations if e.head == h and drawable(e.val_loss)
              and e.num_params is not None]
        born = [e for e in es if e.trial == 1]
        again = [e for e in es if e.trial > 1]
        ax.scatter([e.num_params for e in born], [e.val_loss for e in born], s=12,
                   alpha=0.6, color=COLOURS.get(h), label=f"{h}: births")
        ax.scatter([e.num_params for e in again], [e.val_loss for e in again], s=12,
                   alpha=0.5, facecolor="none", edgecolor=COLOURS.get(h), label=f"{h}: re-judgings")
    first = [e for e in run.primordial() if drawable(e.val_loss) and e.num_params is not None]
    if first:
        ax.scatter([first[0].num_params], [statistics.mean(e.val_loss for e in first)],
                   **PRIMORDIAL_MARK, label=f"primordial creature (defaults; mean of {len(first)})")
    chosen = run.winner_trial()
    trials = [e for e in run.evaluations if chosen and e.of == chosen.of
              and drawable(e.val_loss) and e.num_params is not None]
    if trials:
        ax.scatter([trials[0].num_params], [statistics.mean(e.val_loss for e in trials)],
                   **WINNER, label=f"winner (mean of its {len(trials)} trainings)")
    log_scale(ax.set_xscale, [e.num_params for e in run.evaluations if e.num_params])
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("held-out loss (nats per token)")
    ax.set_title(f"Held-out loss against size, all {sum(1 for e in run.evaluations if e.error is None)}"
                 f" evaluations (the heads score names, not loss), {run.title}", fontsize="medium")
    _shared_legend(fig, ax)
    return fig


def plot_genes(run):
    """Each gene of the table over the generations, every birth a point (whole-number genes as
    counts: the size of a point), coloured by the head that bred it."""
    rows, columns = grid(len(GENES))
    fig, axes = figure(rows, columns)
    cells = axes.ravel()
    offsets = {h: (k - (len(run.heads) - 1) / 2) * 0.22 for k, h in enumerate(run.heads)}
    for ax, gene in zip(cells, GENES):
        for h in run.heads:
            es = [e for e in run.births() if e.head == h]
            if gene in WHOLE:
                counts = {}
                for e in es:
                    key = (run.generation(e), gene_of(e, gene))
                    counts[key] = counts.get(key, 0) + 1
                ax.scatter([g + offsets[h] for g, _ in counts], [v for _, v in counts],
                           s=[6 * n for n in counts.values()], color=COLOURS.get(h), alpha=0.7,
                           label=h)
            else:
                ax.scatter([run.generation(e) + offsets[h] for e in es],
                           [gene_of(e, gene) for e in es], s=5, color=COLOURS.get(h), alpha=0.5,
                           label=h)
        ax.set_title(GENE_LABELS[gene], fontsize="small")
        whole_ticks(ax.xaxis)
        ax.tick_params(labelsize="x-small")
        if gene == "lr":
            log_scale(ax.set_yscale, [gene_of(e, gene) for e in run.births()])
    for ax in cells[len(GENES):]:
        ax.axis("off")
    handles, labels = cells[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(run.heads), fontsize="small")
    fig.suptitle(f"The genes of every birth by generation (point size: how many), {run.title}",
                 fontsize="medium")
    return fig


def plot_lineage(run):
    """The winner's ancestors on one measure: the mean over each one's trials under the winner's
    head, with the spread between its trials (noise, not progress) as error bars."""
    fig, axes = figure()
    ax = axes[0][0]
    chain = lineage(run)
    head = chain[-1]["head"] if chain else None
    xs = list(range(len(chain)))
    ys = [a["score"] if a["score"] is not None else float("nan") for a in chain]
    ax.plot(xs, ys, color="0.6", zorder=1)
    for k, (a, x, y) in enumerate(zip(chain, xs, ys)):
        final = a.get("final")
        if final:
            ax.scatter([x], [y], **WINNER)
        else:
            ax.errorbar([x], [y], yerr=[a["spread"] or 0], fmt="o", color=COLOURS.get(a["head"]),
                        capsize=3, zorder=2)
        label = changes(a).replace("changed ", "").replace("final judgement: ", "tuned: ")
        if a["gathering"]:
            label += f"\nto {a['to']} (Gathering {a['gathering']})"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 12 if k % 2 else -22),
                    ha="center", fontsize="x-small")
    ax.set_xticks(xs, [("winner" if a.get("final") else f"g{a['generation']}") for a in chain],
                  fontsize="small")
    for h in run.heads:
        ax.scatter([], [], color=COLOURS.get(h), label=f"bred by {h}")
    ax.set_xlabel("the winner's ancestors, oldest first (generation born)")
    ax.set_ylabel(f"{head}: mean over trials" if head else "score")
    note = " (bars: the spread between its trials)" if chain else ""
    ax.set_title((f"The winner's lineage{note}, {run.title}" if chain
                  else f"No winner yet, {run.title}"), fontsize="medium")
    if chain:
        ax.legend(fontsize="x-small", loc="best")
        ax.margins(x=0.06, y=0.3)
    else:
        empty(ax, "no winner yet")
    return fig


def plot_time(run):
    """Seconds per evaluation against size; failed evaluations marked."""
    fig, axes = figure()
    ax = axes[0][0]
    for h in run.heads:
        es = [e for e in run.evaluations if e.head == h and drawable(e.seconds)
              and e.num_params is not None]
        ax.scatter([e.num_params for e in es], [e.seconds for e in es], s=12, alpha=0.6,
                   color=COLOURS.get(h), label=h)
    failed = [e for e in run.evaluations if e.error is not None]
    if failed:
        y = max([e.seconds for e in run.evaluations if drawable(e.seconds)] or [1.0])
        ax.scatter([_params(e.genome) for e in failed], [y] * len(failed), marker="x", s=50,
                   color="red", label=f"failed ({len(failed)})")
    log_scale(ax.set_xscale, [e.num_params for e in run.evaluations if e.num_params]
               + [_params(e.genome) for e in failed])
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("seconds per evaluation")
    total = sum(e.seconds for e in run.evaluations if drawable(e.seconds))
    ax.set_title(f"Seconds per evaluation against size: {total:.0f} s in all, {run.title}",
                 fontsize="medium")
    ax.legend(fontsize="small")
    return fig


def timeline_rows(run):
    """[(lane, start, seconds, evaluation)]: each evaluation on the worker that ran it (its lane),
    from when the worker began it to when it was done (training and sampling at every voice),
    in seconds from the run's first; a store from before workers were recorded packs them into
    lanes by their end times (finished, to the second) and training seconds."""
    timed = [e for e in run.evaluations if drawable(e.started) and drawable(e.ended)]
    if timed:
        t0 = min(e.started for e in timed)
        lanes = {w: k for k, w in enumerate(sorted({e.worker or "?" for e in timed}))}
        return [(lanes[e.worker or "?"], e.started - t0, e.ended - e.started, e)
                for e in timed]
    import datetime

    es = []
    for e in run.evaluations:
        try:
            end = datetime.datetime.strptime(e.finished, "%Y-%m-%d %H:%M:%S").timestamp()
        except (TypeError, ValueError):
            continue
        if drawable(e.seconds):
            es.append((end - e.seconds, e))
    if not es:
        return []
    t0 = min(s for s, _ in es)
    free, rows = [], []
    for s, e in sorted(es, key=lambda p: p[0]):
        lane = next((k for k, t in enumerate(free) if t <= s), None)
        if lane is None:
            free.append(0.0)
            lane = len(free) - 1
        free[lane] = s + e.seconds
        rows.append((lane, s - t0, e.seconds, e))
    return rows


def plot_timeline(run):
    """Every evaluation as a bar on the worker that ran it, over the run's wall clock; the final
    judgement set apart (hatched, its span shaded), the primordial creature's in black."""
    from matplotlib.patches import Patch

    fig, axes = figure()
    ax = axes[0][0]
    rows = timeline_rows(run)
    if not rows:
        empty(ax, "no evaluation has a time yet")
    for h in run.heads:
        for final in (False, True):
            bars = [(lane, start, secs) for lane, start, secs, e in rows
                    if e.head == h and run.final(e) == final]
            if bars:
                ax.barh([b[0] for b in bars], [b[2] for b in bars], left=[b[1] for b in bars],
                        height=0.8, color=COLOURS.get(h), hatch="///" if final else None,
                        edgecolor="0.3" if final else COLOURS.get(h), linewidth=0)

    first = [(lane, start, secs) for lane, start, secs, e in rows if e.stage == PRIMORDIAL]
    if first:
        ax.barh([b[0] for b in first], [b[2] for b in first], left=[b[1] for b in first],
                height=0.8, color="black", label="primordial creature")
    finals = [(start, start + secs) for _, start, secs, e in rows if run.final(e)]
    if finals:
        lo, hi = min(a for a, _ in finals), max(b for _, b in finals)
        ax.axvspan(lo, hi, color="0.9", zorder=0, label=f"final judgement ({hi - lo:.0f} s)")
    failed = [(lane, start) for lane, start, _, e in rows if e.error is not None]
    if failed:
        ax.scatter([s for _, s in failed], [lane for lane, _ in failed], marker="x", color="red",
                   zorder=5, label=f"failed ({len(failed)})")
    lanes = sorted({lane for lane, *_ in rows})
    ax.set_yticks(lanes, [f"worker {k + 1}" for k in lanes], fontsize="small")
    ax.set_xlabel("seconds since the run's first evaluation")
    span = max((s + d for _, s, d, _ in rows), default=0)
    ax.set_title(f"Timeline: {len(rows)} evaluations on {len(lanes)} worker(s) in {span:.0f} s,"
                 f" {run.title}", fontsize="medium")
    heads = [Patch(color=COLOURS.get(h), label=h) for h in run.heads]
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(heads + handles, [h.get_label() for h in heads] + labels, fontsize="x-small",
               loc="outside lower center", ncol=6)
    return fig


def plot_compare(a, b):
    """Two runs: their winners' scores head by head, and each head's best champion so far."""
    heads = [h for h in a.heads if h in b.heads] or a.heads
    fig, axes = figure(1, len(heads) + 1)
    bars = axes[0][0]
    width = 0.38
    for k, (run, shade) in enumerate(((a, 1.0), (b, 0.55))):
        w, ref = (run.winner or {}).get("scores", {}), reference_scores(run)
        ys = [percentile(w[h], ref[h]) if drawable(w.get(h)) and ref.get(h) else 0 for h in heads]
        bars.bar([i + (k - 0.5) * width for i in range(len(heads))], ys, width,
                 color=[COLOURS.get(h) for h in heads], alpha=shade,
                 label=f"run {run.id}: standing {(run.winner or {}).get('standing') or 0:.2f}")
    bars.axhline(0.5, color="0.5", linewidth=1, linestyle=":")
    bars.set_ylim(0, 1)
    bars.set_xticks(range(len(heads)), heads, fontsize="small")
    bars.set_ylabel("share of its run's random genomes beaten")
    bars.set_title("the winners (left: first run)", fontsize="small")
    bars.legend(fontsize="x-small", loc="lower left")
    for ax, h in zip(axes[0][1:], heads):
        for run, style in ((a, "-"), (b, "--")):
            line = [(c["generation"], c["score"]) for c in champions(run) if c["head"] == h]
            best = best_so_far(line)
            ax.step([g for g, _ in best], [x for _, x in best], where="post", linestyle=style,
                    color=COLOURS.get(h), label=f"run {run.id}")
        ax.set_title(f"{h}: best champion so far", fontsize="small")
        whole_ticks(ax.xaxis)
        ax.set_xlabel("generation")
        ax.legend(fontsize="x-small")
    fig.suptitle(f"Run {a.id} (solid) and run {b.id} (dashed)", fontsize="medium")
    return fig


def _params(genome):
    """About how many parameters a genome has (vocab 27), for failed evaluations."""
    e, f = genome["n_emb"], genome["n_ff_exp"]
    return 2 * 27 * e + genome["n_ctx"] * e + genome["n_layer"] * (4 * e * e + 2 * f * e * e)


def figures(runs):
    """[(file stem, title, matplotlib Figure)] for one run, or for two (the first's, the
    comparison, then the second's with stems ending in -2)."""
    def of(run, suffix=""):
        return [(f"fitness{suffix}", "Champions per generation", plot_fitness(run)),
                (f"front{suffix}", "What the heads traded: the Pareto front", plot_front(run)),
                (f"importance{suffix}", "Which genes mattered", plot_importance(run)),
                (f"slices{suffix}", "Standing against each gene", plot_slices(run)),
                (f"voices{suffix}", "Temperature x cooling", plot_voices(run)),
                (f"lineage{suffix}", "The winner's lineage", plot_lineage(run)),
                (f"genes{suffix}", "The genes over the generations", plot_genes(run)),
                (f"loss{suffix}", "Held-out loss against size", plot_loss(run)),
                (f"timeline{suffix}", "Where the time went: the timeline", plot_timeline(run)),
                (f"time{suffix}", "Seconds per evaluation against size", plot_time(run))]
    out = of(runs[0])
    if len(runs) == 2:
        out.append(("compare", f"Run {runs[0].id} and run {runs[1].id}", plot_compare(*runs)))
        out.append(("compare-front", f"The fronts of run {runs[0].id} and run {runs[1].id}",
                    plot_fronts(*runs)))
        out += [(stem, f"{title} (run {runs[1].id})", fig) for stem, title, fig in of(runs[1], "-2")]
    return out


"""What every figure shares: the size, the heads' colours, the winner's star, the axes' helpers."""
from microgpt.heads import COLOURS  # noqa: F401  (each head's, declared with it)
from microgpt.hydra import SPACE
from microgpt.report.data import drawable

WIDTH, HEIGHT, DPI = 9.0, 4.5, 100          # inches; every PNG is 900 x 450 pixels
GENE_LABELS = {g.name: g.about for g in SPACE}
WHOLE = {g.name for g in SPACE if g.whole}
WINNER = dict(marker="*", s=220, color="gold", edgecolor="black", zorder=6)
PRIMORDIAL_LINE = dict(color="black", linestyle="-.", linewidth=1.2, zorder=3)
PRIMORDIAL_MARK = dict(marker="D", s=60, color="black", zorder=5)


def figure(nrows=1, ncols=1, **kw):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def grid(n):
    """(rows, columns) for n panels in a wide figure: two rows from four panels on."""
    rows = 1 if n < 4 else 2
    return rows, -(-n // rows)


def empty(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def log_scale(set_scale, values):
    """A log scale on that axis, when it has something to draw (an empty one cannot be logged)."""
    if any(drawable(x) and x > 0 for x in values):
        set_scale("log")


def whole_ticks(axis):
    """Ticks at whole numbers only on axis (generations: no 1.5)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))

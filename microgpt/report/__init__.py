"""`microgpt-hydra report`: pictures of a run, read from the store; nothing is run again.

Follows Optuna's dashboard and visualizations (the plots only read the storage): for a run, or
two side by side, it writes each figure as a PNG and one self-contained HTML page (the figures
embedded as data: URLs, no script or style from anywhere else, so it opens from file:// with no
network), and prints a terminal summary. The page reads top to bottom: the verdict (the winner,
its genome and names, its standing against the random genomes the run began with), the figures,
then the tables; the numbers the figures draw are embedded as JSON (`report-data`).
`--watch` writes it again every few seconds while the run goes on, and the page reloads itself.

Figures (matplotlib, headless Agg backend; every head keeps one colour in every figure):
  fitness     each head's champion per generation as the console prints it, the best so far,
              the random first generation's spread, the winner
  front       the heads' trade-off, two at a time, and the run's Pareto front
  importance  how much of the births' standing each gene explains (correlation ratio)
  slices      standing against each gene
  voices      temperature x cooling, coloured by standing
  lineage     the winner's ancestors on trial means, the spread between trials as noise
  genes       every birth's genes by generation
  loss        held-out loss against size (what the run does not select on)
  timeline    every evaluation on its worker, the final judgement set apart
  time        seconds per evaluation against size
  compare     (two runs) the winners head by head and each head's best so far; then the second
              run's own figures
"""
from microgpt.report.data import (  # noqa: F401
    Run,
    _winner_birth,
    champions,
    changes,
    figure_data,
    importance,
    lineage,
    load_run,
    verdict,
)
from microgpt.report.draw import COLOURS, DPI, HEIGHT, WIDTH  # noqa: F401
from microgpt.report.page import report, summary, watch, write_report  # noqa: F401

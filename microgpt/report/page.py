"""The report's words: the terminal summary and the HTML page, verdict first, then the figures,
then the tables; and writing them, once or (`watch`) again and again while a run goes on."""
import base64
import html
import io
import json
import math
import time
from pathlib import Path

from microgpt.errors import UsageError
from microgpt.files import writable_target, write_atomic
from microgpt.hydra import BY_NAME, CONFIRM_TRIALS, GENES, MAX_TRIALS, PRIMORDIAL_TRIALS
from microgpt.report.data import champions, changes, figure_data, lineage, load_run, verdict
from microgpt.report.draw import DPI, HEIGHT, WIDTH
from microgpt.report.figures import figures
from microgpt.store import Store

CAPTIONS = {
    "fitness": "Each head's champion after each generation, as the console printed it (the mean "
               "over its trials so far), the best so far, and every birth's single trial; the grey "
               "band is the random first generation, from worst to best (its median the grey "
               "line); the dash-dotted line the primordial creature (every gene at its default); "
               "the star the winner's mean over its confirming trials. A champion is the best of "
               f"many seen on at most {MAX_TRIALS} trials, so its mean runs high (the winner's "
               f"curse); the winner is measured afresh on {CONFIRM_TRIALS}, and is chosen by "
               "standing over all the heads, not by one head's score: so it can sit below the "
               "champions' lines.",
    "front": "Every organism's trial means, two heads at a time. Red: the Pareto front, organisms "
             "no other beats on every head at once; it is a front over all the heads, so in one "
             "panel a red point can sit inside the cloud (it is better on a head not drawn).",
    "importance": "How much of the variation in the births' standing each gene explains on its "
                  "own (the correlation ratio: between-value variance over total). A gene the "
                  "births barely varied (temperature and cooling start at their defaults) cannot "
                  "explain much here; the temperature x cooling figure shows what the voice does.",
    "slices": "Each birth's standing (the mean share of the random first generation it beats, "
              "on its one trial) against each gene.",
    "voices": "A voice is how a trained model is sampled: the temperature of a name's first "
              "letter and its cooling (the temperature is multiplied by it letter by letter). "
              "Every evaluation is also heard at a few other voices without training again, and "
              "the final judgement hears its finalists at a grid of them, which is how a winner "
              "can speak at a temperature no birth had. Colour: the mean standing of the names "
              "heard at that voice.",
    "lineage": "The winner's ancestors on one measure, the mean over all of each one's trials "
               "(the final judgement's too, so it can differ from the champion tables, which give "
               "the mean when that generation ended); bars are the spread between trials: a step "
               "that changed no gene moves only by noise.",
    "genes": "Every birth's genes by generation, coloured by the head that bred it.",
    "loss": "The run selects on the heads' scores of the names, not on loss: a winner above other "
            "points is not a worse choice. The diamond is the primordial creature (every gene at "
            "its default).",
    "timeline": "Every evaluation on the worker that ran it; the primordial creature first, in "
                "black; the final judgement hatched and shaded.",
    "time": "Seconds per evaluation against model size; failed evaluations marked.",
    "compare": "Left: each winner's mean score under each head as the share of its own run's "
               "random first generation it beats (0.5: a typical random genome; one trial each, "
               "so a little kinder than the standing, which counts the judges' noise). Then each "
               "head's best champion so far in each run.",
    "compare-front": "Each run's Pareto front (its organisms no other of the run beats on every "
                     "head), two heads at a time.",
}
TERMS = (
    "<details><summary>Terms</summary><dl>"
    "<dt>trial</dt><dd>one evaluation: train the genome on a seed, sample names, score them; an "
    "organism's id ends in /t2, /t3, ... for its second, third trial (a <i>re-judging</i> on a "
    "fresh seed).</dd>"
    "<dt>standing</dt><dd>the share of the run's first generation (random genomes) an organism "
    "beats, averaged over the heads: 0.5 is a typical random genome, 1.0 beats them all.</dd>"
    "<dt>Gathering</dt><dd>between cycles, each head takes in the other heads' champions "
    "(dotted lines in the figures).</dd>"
    "<dt>final judgement</dt><dd>the run's best re-judged on fresh seeds and at many voices, the "
    "leader's genes tuned one at a time (@gene=value in an id), the best few confirmed on "
    f"{CONFIRM_TRIALS} trials each: the best confirmed is the winner.</dd>"
    "<dt>primordial creature</dt><dd>every gene at its default: what <code>microgpt</code> is "
    f"with no genome.json, heard first on {PRIMORDIAL_TRIALS} seeds as the baseline.</dd>"
    "</dl></details>")


def _standing_text(x):
    return f"{x:.2f}" if isinstance(x, (int, float)) and math.isfinite(x) else "?"


def summary(run):
    """The terminal summary's lines."""
    r = run.row
    lines = [f"Run {run.id}: {r['state']}, {r['mode']}, seed {r['seed']}, heads "
             f"{', '.join(run.heads)}; {len(run.evaluations)} evaluations "
             f"({sum(e.error is not None for e in run.evaluations)} failed), started {r['started']}"]
    champs = champions(run)
    for h in run.heads:
        lines.append(f"  {h}: champion per generation (the mean over its trials, as the console "
                     f"printed it)")
        for c in champs:
            if c["head"] == h and c["score"] is not None:
                lines.append(f"    generation {c['generation']:>2}: {c['organism']:20} "
                             f"{c['score']:7.2f}")
    chain = lineage(run)
    if chain:
        lines.append(f"  The winner's lineage ({r['winner']}), each the mean over its trials:")
        for a in chain:
            shown = "failed" if a["score"] is None else f"{a['score']:.2f}"
            if a.get("final"):
                lines.append(f"    final judgement: {a['organism']} changed {', '.join(a['changed'])};"
                             f" score {shown} (mean of {a['trials']} trials; standing "
                             f"{_standing_text(a.get('standing'))})")
                continue
            via = f", went over to {a['to']} at Gathering {a['gathering']}" if a["gathering"] else ""
            lines.append(f"    generation {a['generation']:>2}: {a['organism']:20} {changes(a)}{via};"
                         f" score {shown} ({a['trials']} trials)")
    else:
        lines.append("  No winner yet.")
    if run.skipped:
        lines.append(f"  {len(run.skipped)} evaluation(s) skipped, the store cannot give them; the "
                     f"first: {run.skipped[0]}")
    return lines


def verdict_html(run, several=False):
    """The page's first section: did the evolution beat random genomes, by how much, with what
    (several: one of two runs, its heading naming it)."""
    v, e = verdict(run), html.escape
    head = (f"<div id='verdict-{run.id}'><h2>Verdict: run {run.id}</h2>" if several
            else f"<div id='verdict-{run.id}'><h2>Verdict</h2>")
    facts = (f"{v['evaluations']} evaluations ({v['failed']} failed; {v['final']} of them the "
             f"final judgement's) in {v['seconds']:.0f} s of evaluation; the Pareto front holds "
             f"{v['front']} organisms.")
    w = v["winner"]
    if w is None:
        return (f"{head}<p>No winner yet: the run is "
                f"{e(run.row['state'])}. {e(facts)}</p></div>")
    standing = v["standing"]
    beat = "beat" if (standing or 0) > 0.5 else "did not beat"
    lead = (f"The winner, bred by {e(str(w.get('head')))} ({e(str(w.get('organism')))}), stands "
            f"at <b>{_standing_text(standing)}</b> among the run's random first generation: "
            f"averaged over the heads, it beats that share of the random genomes the run began "
            f"with (1.00: all of them; a random genome stands at 0.50 on average). "
            f"So the evolution {beat} the random genomes. "
            f"Its scores are the mean of {e(str(w.get('trials')))} trials on fresh seeds; the "
            f"final judgement ranks on standing over all the heads, not on one head's score."
            + (f" The primordial creature is every gene at its default (what <code>microgpt</code>"
               f" is with no genome.json), the mean of its {v['primordial trials']} trials."
               if v["primordial trials"] else ""))
    rows = "".join(
        f"<tr><td>{e(h)}</td><td>{_num(x['winner'])}</td><td>{_num(x['random median'])}</td>"
        f"<td>{_num(x['random best'])}</td><td>{_num(x['primordial'])}</td></tr>"
        for h, x in v["heads"].items())
    genes = "".join(f"<tr><td>{e(BY_NAME[g].about)}</td><td>{e(_gene(w.get(g)))}</td></tr>"
                    for g in GENES if g in w)
    names = ", ".join(e(str(n)) for n in (w.get("names") or [])[:20])
    return (f"{head}<p>{lead}</p>"
            f"<table><tr><th>head</th><th>winner</th><th>random genomes: median</th>"
            f"<th>random genomes: best</th><th>primordial creature</th></tr>{rows}</table>"
            f"<p>{e(facts)}</p><div class='pair'><table><tr><th>gene</th><th>the winner's"
            f"</th></tr>{genes}</table><p class='names'><b>Its names</b> (run "
            f"<code>microgpt</code> beside genome.json for more): {names}</p></div></div>")


def _num(x):
    return f"{x:.2f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def _gene(x):
    return f"{x:.4g}" if isinstance(x, float) else str(x)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222;
overflow-wrap:anywhere}}
figure{{margin:2em 0}} img{{max-width:100%;height:auto;border:1px solid #ddd}}
figcaption{{font-size:90%;color:#444}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}
.pair{{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}} .names{{flex:1 1 20em}}
pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap;font-size:85%}}</style></head>
<body><h1>{title}</h1>{status}
{verdicts}
<h2>Figures</h2>
{figures}
<h2>Tables</h2><pre>{summary}</pre>
<script type="application/json" id="report-data">{data}</script>
<script>
// each figure notes the size it rendered at, for a check in a headless browser
// and whether the page is wider than the window (it should never be)
window.addEventListener("load", function () {{
  document.querySelectorAll("img").forEach(function (img) {{
    img.dataset.rendered = img.getBoundingClientRect().width + "x" + img.getBoundingClientRect().height;
  }});
  document.body.dataset.overflow = document.documentElement.scrollWidth > window.innerWidth;
}});
</script></body></html>
"""


def write_report(runs, directory, refresh=None, keep=True):
    """Write the PNGs and report.html into directory, each as genome.json is written
    (microgpt.files: regular files only, a replaced one kept): (the paths written, the files
    kept). refresh: seconds after which the page reloads itself (a watched run), or None; keep
    False: replace the files without keeping them (the watch's own, written again)."""
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
        caption = CAPTIONS.get(stem.removesuffix("-2"), "")
        blocks.append(f'<figure><img id="{stem}" alt="{html.escape(title)}" width="{int(WIDTH * DPI)}"'
                      f' height="{int(HEIGHT * DPI)}" src="data:image/png;base64,{data}">'
                      f"<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)}"
                      f"</figcaption></figure>")
    text = "\n".join(line for run in runs for line in summary(run))
    title = "microgpt-hydra report: " + " and ".join(r.title for r in runs)
    data = json.dumps([figure_data(r) for r in runs], default=str).replace("</", "<\\/")
    status = (f"<p><i>Live: the run is going; this page reloads every {refresh} s (written "
              f"{time.strftime('%H:%M:%S')}).</i></p>" if refresh else "")
    page = PAGE.format(title=html.escape(title), summary=html.escape(text),
                       figures="\n".join(blocks), data=data, status=status,
                       refresh=f'<meta http-equiv="refresh" content="{refresh}">' if refresh else "",
                       verdicts="<section id='verdict'>" + "\n".join(
                           verdict_html(r, len(runs) > 1) for r in runs) + TERMS + "</section>")
    kept = []
    for path, blob in [*files, (paths[0], page.encode("utf-8"))]:
        _, old = write_atomic(path, blob, "--out", keep)
        if old is not None:
            kept.append(old)
    return paths, kept


def _load(store_path, run_ids):
    import matplotlib

    matplotlib.use("Agg")
    store = Store(store_path, readonly=True)
    try:
        return [load_run(store, r) for r in (run_ids or [None])]
    finally:
        store.close()


def _directory(store_path, runs, out):
    return Path(out) if out is not None else (
        Path(store_path).parent / f"report-{'-'.join(str(r.id) for r in runs)}")


def report(store_path, run_ids, out=None):
    """Read the runs from the store, write the report, and return (summary lines, paths: the
    page first)."""
    runs = _load(store_path, run_ids)
    paths, kept = write_report(runs, _directory(store_path, runs, out))
    lines = [line for run in runs for line in summary(run)]
    lines += [f"Replaced a file that was there; it is kept as {k}" for k in kept]
    return lines, paths


def watch(store_path, run_ids, out=None, every=3.0, say=print, sleep=time.sleep):
    """Write the report again every `every` seconds while the runs are running (or as soon as
    the last one is written, when drawing it takes longer; the page reloads itself as often),
    reading the store read-only, so the run never waits for it; once no run is running, write
    it a last time without the reload and return (summary lines, paths)."""
    ids, kept, heard = run_ids, [], {}
    while True:
        began = time.monotonic()
        runs = _load(store_path, ids)
        for r in runs:                              # the voices heard so far are scored once
            r.heard = heard.setdefault(r.id, r.heard)
        going = any(r.row["state"] == "running" for r in runs)
        paths, old = write_report(runs, _directory(store_path, runs, out),
                                  refresh=max(1, round(every)) if going else None, keep=ids is run_ids)
        kept += old                                 # a report that was there before the watch
        ids = [r.id for r in runs]                  # the newest, once: not a later run's
        if not going:
            return ([line for run in runs for line in summary(run)]
                    + [f"Replaced a file that was there; it is kept as {k}" for k in kept], paths)
        say(f"{time.strftime('%H:%M:%S')} {paths[0]}: {sum(len(r.evaluations) for r in runs)} "
            f"evaluations so far")
        sleep(max(0.0, every - (time.monotonic() - began)))    # drawing counts in the wait

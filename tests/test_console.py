"""The console a newcomer reads: every line within WIDTH columns, the Gathering's sentence and what
a standing is told once a run, the winner's why, one progress bar for the whole run.

In-process, on the fake evaluation (tests/hydra_faults.py): the lines' widths come from the
genomes, which the engine breeds as it always does. The command's own output is checked in
test_hydra.py's runs.
"""
import io
from concurrent.futures import ThreadPoolExecutor

import hydra_faults
import pytest

from microgpt.console import WIDTH, Console, banner, fill, standing_words, why_the_winner
from microgpt.evaluators import PoolEvaluator
from microgpt.heads import make_heads
from microgpt.hydra import (
    Heard,
    HydraConfig,
    Organism,
    choose_winner,
    evolve,
    expected_evaluations,
    winner_genome,
)

SENTENCE = "The organism learns from all heads."
EXPLAINED = "of the first generation's random genomes"      # only in the line that says what it is


def run(cfg, heads, quiet=False, progress=False, console_type=Console):
    """(the Evolution, its console) of a whole run on the fake evaluation, the final table printed."""
    console = console_type(cfg, heads, io.StringIO(), quiet=quiet, progress=progress)
    for line in banner(cfg, heads, "hydra", 2):
        console.say(line)
    evaluator = PoolEvaluator(hydra_faults.fake_evaluate, lambda: ThreadPoolExecutor(2))
    try:
        evo = evolve(heads, evaluator, cfg, observer=console)
    finally:
        evaluator.close()
    _, winner, standing = choose_winner(evo)
    console.ascended(evo, "hydra", winner, standing, winner_genome(winner, standing, evo))
    return evo, console


def too_wide(text):
    return [line for line in text.splitlines() if len(line) > WIDTH]


SMALL = HydraConfig(population=4, generations=1, cycles=3, steps=5, samples=6, seed=3)


@pytest.mark.parametrize("quiet", [False, True])
def test_a_run_fits_the_width_and_tells_the_gathering_and_the_standing_once(capsys, quiet):
    heads = make_heads("weaver,mirror,spark", ["anna"])
    _, console = run(SMALL, heads, quiet=quiet)
    out = capsys.readouterr().out
    assert not too_wide(out)
    assert out.count(EXPLAINED) == 1                # where "standing" is first printed
    assert console.log.getvalue().count(EXPLAINED) == 1
    if quiet:
        assert out.startswith("━") and "Gathering" not in out
    else:
        assert out.count("The Gathering:") == SMALL.cycles - 1 and out.count(SENTENCE) == 1
        assert out.index(EXPLAINED) < out.index("6 organisms: each head's champion")
    assert "Why not a champion: each tops one head" in out or "champion too" in out


@pytest.mark.slow
def test_a_default_sized_run_fits_the_width(capsys):
    # the default run's sizes, heads and seed; fewer names per evaluation (only scores change)
    _, console = run(HydraConfig(seed=0, samples=20), make_heads("weaver,mirror,spark", ["anna"]))
    out = capsys.readouterr().out
    assert not too_wide(out) and not too_wide(console.log.getvalue())
    assert out.count(SENTENCE) == 1 and out.count(EXPLAINED) == 1
    assert "c3g3" not in out and "@" not in out          # no organism ids: the stages in words


def test_fill_keeps_words_whole_within_the_width():
    assert fill("  [Spark] Champion:", ["Emb:16", "Lay:2"], 4) == ["  [Spark] Champion: Emb:16 Lay:2"]
    assert fill("ab", ["cd", "ef"], 4, width=6) == ["ab cd", "    ef"]
    assert fill("ab", ["longer-than-6"], 2, width=6) == ["ab", "  longer-than-6"]


def organism(genome, head, scores):
    """An evaluated organism with made-up scores."""
    o = Organism(genome, head, 0, 0, 0, 1)
    o.birth.result, o.birth.scores = {"names": ["anna"], "val_loss": 2.0}, scores
    return o


WIDEST = {"n_emb": 40, "n_head": 4, "n_layer": 4, "lr": 0.0001, "temperature": 0.25, "cooling": 0.65,
          "n_ctx": 12, "n_ff_exp": 3}


def test_a_champion_is_one_line_unless_it_needs_two():
    heads = make_heads("weaver,mirror,spark,origin", ["anna"])
    console = Console(HydraConfig(), heads, io.StringIO(), quiet=False, progress=False)
    spark = heads[2]
    scores = {h.name: -12.34 for h in heads}
    # every gene off its default and a mark: the score goes on to a second line
    lines = console.champion_lines(spark, organism(WIDEST, "Mirror", scores))
    assert len(lines) == 2 and all(len(line) <= WIDTH for line in lines)
    assert lines[0].startswith("  [Spark]  Champion: Emb:40 Head:4 Lay:4 LR:0.0001 T:0.25 Cool:0.65")
    assert lines[1].strip() == "-> Score: -12.34 (Creativity) ←Mirror"
    # the seed's look when evolution moved nothing else
    seed_like = dict(WIDEST, temperature=1.0, cooling=1.0, n_ctx=16, n_ff_exp=4)
    assert console.champion_lines(spark, organism(seed_like, "Spark", scores)) == [
        "  [Spark]  Champion: Emb:40 Head:4 Lay:4 LR:0.0001 -> Score: -12.34 (Creativity)"]


def test_the_standing_is_told_as_the_share_of_random_genomes_it_beats():
    three, one = make_heads("weaver,mirror,spark", ["anna"]), make_heads("spark", ["anna"])
    assert standing_words(three, 0.855).startswith("standing 0.85: it beats 85% of the first")
    assert standing_words(three, 0.86).endswith("random genomes, mean over the heads")
    assert standing_words(one, 0.5).endswith("random genomes, under Spark")
    assert standing_words(three).startswith("(standing: the share of the first generation's")
    assert all(len("  " + standing_words(three, x)) <= WIDTH for x in (0.0, 0.5, 1.0))


def test_the_winner_says_why_it_is_not_a_champion():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    champions = {h.name: organism(dict(WIDEST), h.name, {}) for h in heads}
    other = organism(dict(WIDEST), "Spark", {})
    heard = Heard(other, (1.25, WIDEST["cooling"]), [])
    assert why_the_winner(heard, champions, heads).startswith(
        "Why not a champion: each tops one head; the final judgement ranks on standing over all")
    heard.organism = champions["Spark"]
    assert why_the_winner(heard, champions, heads).startswith("It is Spark's champion too")
    assert why_the_winner(Heard(other, (1.0, 1.0), []), {"Spark": champions["Spark"]},
                          heads[2:]).startswith("Why not the champion: the final judgement ranks")


def test_one_progress_bar_counts_the_whole_run_and_names_the_final_judgement(capsys):
    totals = []

    class Watched(Console):
        def start_wave(self, todo, desc, total, by_head):
            totals.append((total, self.finished + len(todo)))
            super().start_wave(todo, desc, total, by_head)

    heads = make_heads("weaver,mirror,spark", ["anna"])
    evo, console = run(SMALL, heads, progress=True, console_type=Watched)
    err = capsys.readouterr().err
    # the total starts at the run's count in advance, and only comes down as waves make fewer
    first = expected_evaluations(SMALL.population, SMALL.generations, SMALL.cycles, len(heads))
    assert totals[0][0] == first
    assert [t for t, _ in totals] == sorted((t for t, _ in totals), reverse=True)
    assert all(total >= reached for total, reached in totals)
    assert console.finished == len(evo.made()) <= totals[-1][0]
    assert "final judgement" in err and "this wave 0/" in err and "Weaver 0/0" not in err
    assert console.bar is None                          # closed before the final table

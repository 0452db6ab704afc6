"""How an organism is heard: every evaluation samples its trained model at several voices (a
temperature at the organism's cooling, or a (temperature, cooling) pair), which costs no training;
`at_temperatures` turns those into the organism heard at each voice (`Heard`)."""
from microgpt._core import powi
from microgpt.hydra.organism import Heard, Trial
from microgpt.worker import voice

VOICES = (0.7, 0.8, 0.9, 1.0)   # every evaluation also samples at these temperatures (mid-name)
MID_NAME = 3                    # the letter (from 0) at which a cooled voice is at these
TEMPERATURES = (0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4)   # it hears each at these too


def voices(genome):
    """The temperatures every evaluation also samples at, to find the organism's best voice: its
    own, and VOICES at mid-name (`mid_name`)."""
    return heard_at(genome["temperature"], mid_name(VOICES, genome["cooling"]))


def temperature_grid(genome, coolings=()):
    """The voices the final judgement hears an organism at: its own temperature, and
    TEMPERATURES at mid-name (`mid_name`), at its cooling; then, for each other of coolings,
    TEMPERATURES at mid-name cooling by it, as (temperature, cooling) pairs. Hearing costs no
    training, so the finalists' voices are searched in two dimensions."""
    own = heard_at(genome["temperature"], mid_name(TEMPERATURES, genome["cooling"]))
    return own + tuple((t, c) for c in coolings if c != genome["cooling"]
                       for t in mid_name(TEMPERATURES, c))


def mid_name(temperatures, cooling):
    """The temperatures at which a name's MID_NAME-th letter (from 0) samples at these: each
    divided by cooling**MID_NAME (`powi`: the same bits on every CPU; rounded to 4 digits), the
    same ones for a voice that does not cool. A cooled voice is heard where it stands best, bold
    at first and calm by the end, without sampling the flat voice's temperatures, which are too
    cold for it."""
    return tuple(float(f"{t / powi(cooling, MID_NAME):.4g}") for t in temperatures)


def heard_at(t, temperatures):
    """temperatures and t, sorted; without t when it is within 2% of one of them (0.9 and
    0.9000000001 would sample near enough the same names twice)."""
    if any(abs(t - x) <= 0.02 * x for x in temperatures):
        return tuple(temperatures)
    return tuple(sorted({t, *temperatures}))


def at_temperatures(finalist, heads, trials=None):
    """finalist as heard at each voice its trials sampled at (trials: these of its trials,
    default all): one `Heard` per voice, whose trials are those trials' names and scores at it
    (their training, seed and losses unchanged)."""
    trials = [t for t in (finalist.judged() if trials is None else trials)
              if t.temperatures and t.result is not None]
    if not trials:
        return []
    trials = [t for t in trials if t.temperatures == trials[0].temperatures]
    variants = []
    for k, spoken in enumerate(trials[0].temperatures):
        v = voice(spoken, finalist.genome["cooling"])       # (temperature, cooling)
        heard = [Trial(finalist, t.n, t.seed, result=dict(t.result, names=t.result["names_at"][k]),
                       scores=t.scores_at[k], voice=v) for t in trials]
        variants.append(Heard(finalist, v, heard))
    return variants


def voice_of(heard):
    """How heard (an organism heard at a voice, `Heard`) speaks, as a voice of its organism's:
    its temperature, or (temperature, cooling) when it cools otherwise."""
    t, c = heard.voice
    return t if c == heard.organism.genome["cooling"] else (t, c)

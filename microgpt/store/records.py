"""What the store gives back of an evaluation: an `Evaluation`, its JSON decoded and every value
checked (`Checks.check_evaluation`). The report reads these, never the store's SQL."""
from dataclasses import dataclass, fields
from typing import Optional


@dataclass(frozen=True)
class Evaluation:
    """One trial of an organism, as stored (docs/formats.md has the columns)."""
    run_id: int
    organism: str                   # c<cycle>g<generation>-<Head>-<idx>[@gene=value...][/t<trial>]
    head: str                       # the island that bred it ('' for the primordial creature)
    cycle: int                      # 1-based, as generation (within the cycle)
    generation: int
    idx: int
    trial: int                      # 1: its birth; 2, 3, ...: re-judged on a fresh seed
    seed: int
    parent: Optional[str]           # the champion it is a mutant of
    genome: dict                    # genome.json's genes
    scores: dict                    # {head: score, None where it failed}
    names: Optional[list]
    names_at: Optional[list]        # the names at each other voice it was heard at
    val_loss: Optional[float]
    final_loss: Optional[float]
    num_params: Optional[int]
    seconds: Optional[float]
    error: Optional[str]
    attempts: int
    finished: str
    started: Optional[float] = None   # schema 3: when its worker began and ended it,
    ended: Optional[float] = None
    worker: Optional[str] = None      # ... which process ran it,
    stage: Optional[str] = None       # ... and its stage (schema.STAGES)

    @classmethod
    def from_row(cls, row):
        """An Evaluation of a checked row (a dict; a column an older store lacks is None)."""
        return cls(**{f.name: row.get(f.name) for f in fields(cls)})

    @property
    def of(self):
        """The id of the organism this is a trial of: its own id without the trial's /t<trial>
        (docs/formats.md), which the front and the champions name."""
        suffix = f"/t{self.trial}"
        return self.organism[:-len(suffix)] if self.organism.endswith(suffix) else self.organism

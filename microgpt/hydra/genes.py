"""The search space's operations, on the gene table (microgpt.genes: each gene declared once):
a new organism's genome, a mutant's, a random search's, the values the final judgement tries,
how a genome is shown, and the seeds derived from an organism's identity.
"""
import hashlib

from microgpt.genes import BY_NAME, GENES, SPACE
from microgpt.genome import GENE_KEYS


def new_genome(rng):
    """A random genome for a new organism: the genes with a `new` draw drawn (in SPACE's order),
    the others TrainingConfig's defaults."""
    genome = {g.name: g.new(rng) if g.new is not None else g.default() for g in SPACE}
    return repair(genome)


def default_genome():
    """Every gene at TrainingConfig's default: the primordial creature, `microgpt` with no
    genome.json."""
    return repair({g.name: g.default() for g in SPACE})


def extended_genome(rng):
    """A genome drawn over the whole space Hydra's mutants reach, each gene by its `extended`
    draw (what a random search draws, and an outside judge's second yardstick)."""
    return repair({g.name: g.extended(rng) for g in SPACE})


def mutate(genome, rng):
    """A copy of genome with one gene changed (possibly to the value it had), then repaired."""
    child = dict(genome)
    gene = BY_NAME[rng.choice(GENES)]
    child[gene.name] = gene.mutate(rng, child[gene.name])
    return repair(child)


def tuning_values(gene, genome):
    """The values the final judgement tries for gene (one with a `tune`) of genome."""
    return BY_NAME[gene].tune(genome)


def trains_alike(genome, other):
    """Whether two genomes train the same model: they differ at most in genes of the voice."""
    return all(genome[g.name] == other[g.name] for g in SPACE if not g.voice)


def describe(genome, changed=False):
    """The genome in one line: 'Emb:16 Head:4 Lay:1 LR:0.0050 T:1.00 Cool:1.00 Ctx:16 FF:4'.

    changed: only the genes a new organism draws (the seed's four, always shown) and the others
    that show otherwise than their default ('Emb:16 Head:4 Lay:1 LR:0.0050 Cool:0.73'): what
    evolution moved, in the seed's short look (`at_defaults` says what is left out)."""
    return " ".join(g.show(genome[g.name]) for g in SPACE
                    if not changed or g.new is not None or g.show(genome[g.name]) != g.show(g.default()))


def at_defaults():
    """'T:1.00 Cool:1.00 Ctx:16 FF:4': the genes a new organism does not draw, at their defaults
    (what `describe(genome, changed=True)` leaves out)."""
    return " ".join(g.show(g.default()) for g in SPACE if g.new is None)


def repair(genome):
    """genome with n_head set to 2 when it does not divide n_emb (the seed's repair)."""
    if genome["n_emb"] % genome["n_head"]:
        genome["n_head"] = 2
    return genome


def full_genome(genome, steps):
    """genome.json's genes: the seven of the seed (steps the run's), then the other genes."""
    full = {k: genome[k] for k in GENES}
    full["steps"] = steps
    return {k: full[k] for k in (*GENE_KEYS, *(g for g in GENES if g not in GENE_KEYS))}


def derive_seed(*identity):
    """A 63-bit seed from the run's seed and an identity; sha256, so the same in every process."""
    text = ":".join(str(part) for part in identity)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1

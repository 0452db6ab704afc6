"""`Recorder`: the observer of a run (microgpt.hydra.Observer) that writes it into the store as it
goes, each evaluation in its stage, each generation's champions and each Gathering."""
from microgpt.hydra import Observer
from microgpt.store.schema import EVOLUTION, FINAL_JUDGEMENT, PRIMORDIAL


class Recorder(Observer):
    """The store's view of a run: each evaluation and Gathering as it happens."""

    def __init__(self, store, run_id, cfg):
        self.store, self.run_id, self.cfg = store, run_id, cfg
        self.stage = EVOLUTION

    def primordial_started(self, todo):
        self.stage = PRIMORDIAL

    def generation_started(self, cycle, generation, todo):
        self.stage = EVOLUTION

    def final_started(self, organisms, todo, what):
        self.stage = FINAL_JUDGEMENT

    def evaluated(self, trial):
        self.store.add_evaluation(self.run_id, trial, self.cfg.steps, self.stage)

    def generation(self, cycle, generation, populations):
        self.store.add_champions(self.run_id, cycle, generation, populations)

    def gathering(self, cycle, pool, received):
        self.store.add_gathering(self.run_id, cycle, received)

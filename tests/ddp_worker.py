"""Run under torchrun by test_distributed.py: train (argv: out, dump folder, optional JSON of options), then save
this rank's final weights."""

import json
import sys

from safetensors.torch import save_file

from ganforge.config import TrainConfig
from ganforge.training import run

out, dump = sys.argv[1], sys.argv[2]
overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}  # options that differ from the run below
state = {}  # the trained weights, copied: keeping the trainer would keep its DDP wrappers past the process group
original_fit = run.Trainer.fit


def fit_and_keep(self):
    original_fit(self)
    state.update({f"{name}.{k}": v.detach().contiguous().clone()
                  for name, net in self.task.nets.items() for k, v in net.state_dict().items()})


run.Trainer.fit = fit_and_keep
cfg = TrainConfig(**{**dict(data="digits", resolution=8, width=8, batch_size=16, steps=5, out=out, log_every=1), **overrides})
run.train(cfg)
rank = int(__import__("os").environ["RANK"])
save_file(state, f"{dump}/rank{rank}.safetensors")

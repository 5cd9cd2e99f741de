"""Run under torchrun by test_distributed.py: train, then save this rank's final weights."""

import sys

from safetensors.torch import save_file

from ganforge.config import TrainConfig
from ganforge.training import run

out, dump = sys.argv[1], sys.argv[2]
trainers = []
original_fit = run.Trainer.fit


def fit_and_keep(self):
    original_fit(self)
    trainers.append(self)


run.Trainer.fit = fit_and_keep
cfg = TrainConfig(data="digits", resolution=8, width=8, batch_size=16, steps=5, out=out, log_every=1)
run.train(cfg)
rank = int(__import__("os").environ["RANK"])
state = {f"{name}.{k}": v.contiguous() for name, net in trainers[0].task.nets.items() for k, v in net.state_dict().items()}
save_file(state, f"{dump}/rank{rank}.safetensors")

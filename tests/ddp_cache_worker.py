"""Run under torchrun by test_data_cache.py: train one epoch from a cache; save this rank's weights and the
indices it read."""

import json
import os
import sys

from safetensors.torch import save_file

from ganforge.config import TrainConfig
from ganforge.data.cache import ImageCache
from ganforge.training import run

cache, out, dump = sys.argv[1:4]
trainers, indices_read = [], []
original_fit, original_read = run.Trainer.fit, ImageCache.read


def fit_and_keep(self):
    original_fit(self)
    trainers.append(self)


def read_and_record(self, indices):
    indices_read.extend(int(i) for i in indices)
    return original_read(self, indices)


run.Trainer.fit = fit_and_keep
ImageCache.read = read_and_record
run.train(TrainConfig(data=cache, width=8, batch_size=8, steps=2, out=out, log_every=1))
rank = os.environ["RANK"]
state = {f"{name}.{k}": v.contiguous() for name, net in trainers[0].task.nets.items() for k, v in net.state_dict().items()}
save_file(state, f"{dump}/rank{rank}.safetensors")
with open(f"{dump}/rank{rank}.json", "w") as f:
    json.dump(indices_read, f)

"""`torchrun --nproc_per_node 2 tests/launched/collectives.py OUT.json`: pipelines.runtime.distributed's collectives
on a real 2-process gloo group, against the same numbers computed on one process. Rank 0 writes what it measured to
OUT.json; tests/test_distributed.py asserts on it."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from pipelines.runtime import distributed  # noqa: E402
from pipelines.stages.ppo.core import whiten  # noqa: E402

distributed.init("cpu")
rank = distributed.rank()
out = {"world_size": distributed.world_size()}

# Advantages whitened over the global batch: each rank holds half the rows of one batch.
torch.manual_seed(0)
x = torch.randn(6, 5) * 3 + 1
mask = (torch.rand(6, 5) > 0.3).float()
full = whiten(x, mask)
mine = slice(0, 3) if rank == 0 else slice(3, 6)
sharded = whiten(x[mine], mask[mine], total=distributed.sum_over_ranks)
alone = whiten(x[mine], mask[mine])
out["whiten_global_vs_full"] = (sharded - full[mine]).abs().max().item()
out["whiten_local_vs_full"] = (alone - full[mine]).abs().max().item()

# Gradients averaged: rank r's gradient is r + 1 everywhere; one parameter has no gradient on rank 1.
a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))
a.grad = torch.full((3,), rank + 1.0)
b.grad = torch.full((2, 2), 4.0) if rank == 0 else None
distributed.average_gradients([a, b])
out["averaged_a"], out["averaged_b"] = a.grad.tolist(), b.grad.flatten().tolist()

out["mean_over_ranks"] = distributed.mean_over_ranks({"score": float(rank), "tokens_per_second": 10.0 + rank},
                                                      summed=("tokens_per_second",))
out["agree_when_only_rank_1_says_yes"] = distributed.agree(rank == 1)
out["agree_when_nobody_does"] = distributed.agree(False)

same = [torch.nn.Parameter(torch.ones(4))]
out["replicas_same"] = distributed.replica_difference(same)
differ = [torch.nn.Parameter(torch.ones(4) * (1 + rank * 0.5))]
out["replicas_differ"] = distributed.replica_difference(differ)
distributed.broadcast_parameters(differ)
out["replicas_after_broadcast"] = distributed.replica_difference(differ)
out["shared_from_main"] = distributed.share_from_main(lambda: f"made by rank {distributed.rank()}")

if rank == 0:
    Path(sys.argv[1]).write_text(json.dumps(out))
distributed.finish()

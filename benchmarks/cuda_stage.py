"""Run one stage through the project's CLI in this process and report the peak GPU memory it allocated.

The pipelines do not record VRAM, so on CUDA `benchmarks/run.py` starts this wrapper (a fresh process per
measurement, like `python -m pipelines`) instead of the module itself:

    python benchmarks/cuda_stage.py sft --config sample_data/recipes/sft_quick.yaml --runs-dir DIR ...

Its arguments are exactly the CLI's. After the stage it prints one line `BENCH_CUDA {json}` with
torch.cuda.max_memory_allocated / max_memory_reserved in MiB, and exits with the CLI's exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    from pipelines.cli import main as cli_main

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    code = cli_main(sys.argv[1:])
    report = {"exit_code": code, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        report.update(max_allocated_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1),
                      max_reserved_mb=round(torch.cuda.max_memory_reserved() / 2**20, 1),
                      device=torch.cuda.get_device_name(0))
    print("BENCH_CUDA " + json.dumps(report), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The program each ``torchrun`` process runs for a study training run with ``processes > 1``
(started by :func:`unetq.train.load_or_train`; not meant to be called by hand, use
``unetq.cli.train`` for that): join the process group, then :func:`load_or_train` the run, which
trains with DistributedDataParallel and has rank 0 write the checkpoint."""
from __future__ import annotations

import argparse
import json
import sys

from ..config import StudyConfig
from . import distributed
from .runs import load_or_train


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.train.torchrun_main")
    ap.add_argument("--arch", required=True)
    ap.add_argument("--config", required=True, help="the StudyConfig as JSON")
    ap.add_argument("--model-kw", default="{}")
    ap.add_argument("--tag", default=None)
    a = ap.parse_args(argv)
    distributed.init()
    cfg = StudyConfig(**json.loads(a.config))
    load_or_train(a.arch, cfg, tag=a.tag, progress=distributed.is_main(), verbose=distributed.is_main(),
                  **json.loads(a.model_kw))
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

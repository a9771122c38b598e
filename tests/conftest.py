import os
from pathlib import Path

# Tests never write into the committed reports/ or data/ folders.
_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("UNETQ_REPORTS_DIR", str(_ROOT / "build" / "test-reports"))
# ... and stand in for the committed report too, so no committed row leaks into a test's reads.
os.environ.setdefault("UNETQ_PUBLISHED_DIR", os.environ["UNETQ_REPORTS_DIR"])
os.environ.setdefault("UNETQ_DATA_DIR", str(_ROOT / "build" / "test-data"))

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

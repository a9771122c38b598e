"""torch.compile runner (inductor; needs a C++ compiler). Slow: compiling takes tens of seconds."""
import numpy as np
import pytest
import torch

from unetq.deploy import make_runner, runner_unavailable_reason
from unetq.models import create_model


@pytest.mark.slow
def test_torch_compile_runner_matches_eager():
    why = runner_unavailable_reason("torch_compile", "fp32")
    if why:
        pytest.skip(f"torch_compile/fp32: {why}")
    torch.manual_seed(0)
    m = create_model("unet", width=4).eval()
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    r = make_runner("torch_compile", "fp32", model=m)
    y = r(x)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-4)
    y2 = r(x[:2])  # a smaller batch is padded to the compiled size, not recompiled
    np.testing.assert_allclose(y2, ref[:2], rtol=0, atol=1e-4)
    assert r.compiled_batch == 3

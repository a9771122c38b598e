"""unetq: efficient U-Nets for segmentation, trained, quantized and benchmarked.

Sub-modules (imported on demand, so `import unetq` stays cheap):

- ``unetq.paths``    where data, checkpoints and results live (env-overridable)
- ``unetq.presets``  the ``ci`` / ``quick`` / ``paper`` parameter presets
- ``unetq.io``       atomic writes of tables, JSON and checkpoints; machine description
- ``unetq.data``     procedural crack generator, dataset loaders, preprocessing, splits
- ``unetq.models``   U-Net, Ghost U-Net, Squeeze U-Net, MBU-Net; parameter tables, profiles
- ``unetq.metrics``  loss, IoU and Dice
- ``unetq.train``    trainer with checkpoint/resume and mixed precision
- ``unetq.deploy``   ONNX export, runners for every backend/precision, INT8 quantization
- ``unetq.bitpack``  bit-packed binary/ternary inference engine (numba)
- ``unetq.bench``    latency/throughput/memory benchmark harness
- ``unetq.pipeline`` the main job: notebooks 01-08 with papermill, then the HTML report
- ``unetq.sweep``    papermill sweeps of a notebook over a parameter grid
- ``unetq.report``   report sections and the deployment recommendation, read from the result tables
- ``unetq.explorer`` ipywidgets explorer
"""

__version__ = "0.1.0"

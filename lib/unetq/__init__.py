"""unetq: efficient U-Nets for segmentation, trained, quantized and benchmarked.

Layers, each importing only those below it (``tests/test_layers.py`` checks it):

- ``unetq.cli``       command-line drivers: ``pipeline`` (the main job), ``sweep``,
                      ``deploy_benchmark``, ``bitpack_benchmark``
- ``unetq.studies``   one module per notebook (data, architectures, mbu, quantization, benchmark,
                      report, explorer) with its result tables and figures
- engines: ``unetq.train`` (trainer, checkpoints), ``unetq.deploy`` (ONNX, INT8, runners for
  every backend/precision), ``unetq.bench`` (timing, memory, energy)
- ``unetq.bitpack`` (bit-packed binary/ternary engine), ``unetq.data`` (generator, loaders,
  splits)
- ``unetq.models`` (U-Net, Ghost U-Net, Squeeze U-Net, MBU-Net), ``unetq.metrics`` (loss, IoU,
  Dice), ``unetq.results`` (every result table: name, key, writer, reader)
- ``unetq.config`` (presets and the frozen ``StudyConfig``), ``unetq.machine`` (threads, load,
  peak memory, machine description), ``unetq.io`` (atomic writes), ``unetq.paths``

Sub-modules are imported on demand, so ``import unetq`` stays cheap.
"""

__version__ = "0.1.0"

"""Command-line drivers, the top layer: nothing in the library imports them.

- ``python -m unetq.cli.pipeline``          the main job: every notebook with papermill, then the
                                            HTML report
- ``python -m unetq.cli.sweep``             one notebook over a parameter grid
- ``python -m unetq.cli.deploy_benchmark``  ONNX Runtime INT8 vs FP32 on this CPU
- ``python -m unetq.cli.bitpack_benchmark`` the bit-packed engine against its peers
"""

"""The study layer: one module per notebook, each holding what its notebook runs, the result
tables it writes (through :mod:`unetq.results`) and its figures. Notebooks are narrative over
these functions; the engines below (``train``, ``deploy``, ``bench``, ``bitpack``, ``data``)
know nothing of notebooks.

- ``data``           01_data: the data settings, statistics table, figures
- ``architectures``  02_unet, 03_ghost_unet, 04_squeeze_unet: parameter tables, profile,
                     training, predictions, AMP vs float32
- ``mbu``            05_mbu_net: cost ranking, variants, accuracy, sparsity, packed speed, Pareto
- ``ablations``      05_mbu_net: Table 1, the masking order and the Pareto sweep trained from scratch
- ``zeros``          05_mbu_net: whether the zeros of masked layers emerge from training
- ``quantization``   06_quantization: every representation's accuracy and size, INT8 study
- ``benchmark``      07_benchmark: the latency/throughput/memory suite
- ``characterise``   07_benchmark: every engine and precision over batch and image sizes, AMP
- ``deploy_seeds``   08_report: every representation of every training seed's model, scored
- ``tuning``         every architecture: the learning-rate grid and the rate it chose
- ``report``         08_report: the sections, read from the tables
- ``sections``       08_report: what a section is, and the table loading sections share
- ``recommend``      08_report: which model and representation for which priority, per seed
- ``explorer``       08_report: the ipywidgets explorer
- ``figures``        what the figures and tables share (saving, showing with alt text, error-map
                     and format colours, legends outside the data, tables with units)
- ``notice``         every notebook: the smoke-test line of the ``ci`` preset; "not measured on
                     this machine" (absent hardware) vs "not run yet" (with the command)
"""

"""Data for the study: the procedural crack generator (default dataset), loaders for the real
datasets' folder layouts, seed 000's preprocessing, reproducible splits and dataset statistics.
It owns reading, generating and splitting images; figures of the data live in
``unetq.studies.data``.

- :mod:`.synthetic`  ``make_synthetic_cracks``, ``ensure_synthetic`` (cached, atomic)
- :mod:`.layouts`    ``Sample``, ``find_samples`` (kaggle, deepcrack, carvana, isic2018, dsb2018;
                     pairs in sub-folders too), ``skipped_files`` (what is not an image type)
- :mod:`.imageio`    reading with clear errors, ``binarize`` (> 100; 0/1 masks: 1), resizing, ``DataError``
- :mod:`.dataset`    ``CrackDataset`` (cached or lazy), ``make_loader``
- :mod:`.splits`     ``split_samples``, ``prepare_splits`` (split files), ``splits_from_preset``
- :mod:`.identity`   ``dataset_identity`` (layout + content hash of a dataset folder)
- :mod:`.stats`      ``pixel_value_proportions``, ``crack_fraction_per_split``, ``data_stats_table``
"""
from .dataset import CrackDataset, make_loader
from .identity import SYNTHETIC, dataset_identity, is_synthetic, run_columns, run_tag
from .imageio import DataError, binarize, load_pair, read_image, read_mask
from .layouts import LAYOUTS, Sample, detect_layout, find_samples, skipped_files, validate_samples
from .splits import check_splits, prepare_splits, read_split_file, split_file_path, split_samples, splits_from_preset
from .stats import (crack_fraction_per_split, data_stats_table, per_image_crack_fraction,
                    pixel_value_proportions, split_sizes)
from .synthetic import ensure_synthetic, make_synthetic_cracks, synth_crack_pair

__all__ = [
    "SYNTHETIC", "dataset_identity", "is_synthetic", "run_columns", "run_tag", "check_splits", "read_split_file", "split_file_path",
    "CrackDataset", "DataError", "LAYOUTS", "Sample", "binarize", "crack_fraction_per_split",
    "data_stats_table", "detect_layout", "ensure_synthetic", "find_samples", "load_pair",
    "make_loader", "make_synthetic_cracks", "per_image_crack_fraction", "pixel_value_proportions",
    "prepare_splits", "read_image", "read_mask", "split_samples", "split_sizes", "splits_from_preset",
    "synth_crack_pair", "validate_samples", "skipped_files",
]

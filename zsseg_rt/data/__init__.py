"""Datasets for training and evaluation (NumPy + OpenCV + PIL; torch only inside the training stream).

* :func:`build_dataset` / the readers in :mod:`.datasets` (VOC, COCO-Stuff 164k, Context-59, ADE-150, folder)
* :mod:`.splits`: vocabularies and seen/unseen splits as JSON data (``zsseg_rt/data/splits``)
* :mod:`.labels`: label reading, reduce-zero-label, the official lookup tables
* :mod:`.transforms`: the official training augmentation; :mod:`.loader`: deterministic resumable sampling
* :mod:`.synthetic`: procedural labelled images for tests
"""

from .build import build_dataset
from .datasets import DATASET_TYPES, DatasetLayoutError, SegmentationDataset
from .labels import (
    IGNORE_INDEX,
    CorruptFileError,
    apply_lut,
    check_label_range,
    inductive_lut,
    read_image,
    read_label,
    reduce_zero_label,
    transductive_lut,
)
from .splits import ClassSplit, list_splits, load_split
from .synthetic import SyntheticDataset, make_synthetic_sample, synthetic_dataset, write_synthetic_dataset
from .transforms import TrainAugmentation

__all__ = [
    "build_dataset",
    "SegmentationDataset",
    "DatasetLayoutError",
    "DATASET_TYPES",
    "ClassSplit",
    "load_split",
    "list_splits",
    "IGNORE_INDEX",
    "CorruptFileError",
    "apply_lut",
    "check_label_range",
    "inductive_lut",
    "transductive_lut",
    "read_image",
    "read_label",
    "reduce_zero_label",
    "TrainAugmentation",
    "SyntheticDataset",
    "synthetic_dataset",
    "write_synthetic_dataset",
    "make_synthetic_sample",
]

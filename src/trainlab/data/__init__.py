"""Data: readers (IDX, image folders and archives, CIFAR pickles), data sets by name, and the
device-resident loader.

>>> ds = load_dataset("synthetic(n=64)")
>>> loader = DeviceLoader(ds.train_images, ds.train_labels, 16, seed=0, transform=random_hflip)
>>> loader.set_epoch(0)
>>> x, y = next(iter(loader))
>>> tuple(x.shape), x.dtype
((16, 1, 16, 16), torch.uint8)
"""

from trainlab.augment.geometric import hflip as random_hflip
from trainlab.data.cifar import read_cifar_pickle
from trainlab.data.datasets import ImageDataset, dataset_names, load_dataset
from trainlab.data.idx import read_idx
from trainlab.data.imagefolder import ImageFolder, read_image_folder
from trainlab.data.loader import DeviceLoader, split_validation
from trainlab.seeding import derive_seed, make_generator

__all__ = [
    "read_idx",
    "read_image_folder",
    "read_cifar_pickle",
    "load_dataset",
    "dataset_names",
    "ImageDataset",
    "ImageFolder",
    "DeviceLoader",
    "split_validation",
    "random_hflip",
    "derive_seed",
    "make_generator",
]

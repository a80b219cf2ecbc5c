"""Real photos that ship inside installed wheels: no download, the same pixels on every machine.

scikit-image, scikit-learn and matplotlib each carry a few colour photographs in their wheels
(skimage/data/, sklearn/datasets/images/, matplotlib/mpl-data/sample_data/). They are read
straight from those folders: skimage.data's loader functions fetch some images through pooch,
so none of them is called, and a photo missing from its folder is an error, never a download.

The split is fixed and named: the trained suite (gencompress.benchmarks.suite) trains on crops
of TRAIN only; HELD_OUT is for judging, and no model ever sees it in training. The stereo pair
(motorcycle_left/right, one scene) stays on one side of the split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import GencompressError

# name -> (the package whose wheel carries it, the file inside that package's data folder)
PHOTOS = {
    "astronaut": ("skimage", "astronaut.png"),
    "coffee": ("skimage", "coffee.png"),
    "motorcycle_left": ("skimage", "motorcycle_left.png"),
    "motorcycle_right": ("skimage", "motorcycle_right.png"),
    "hubble_deep_field": ("skimage", "hubble_deep_field.jpg"),
    "retina": ("skimage", "retina.jpg"),
    "ihc": ("skimage", "ihc.png"),
    "china": ("sklearn", "china.jpg"),
    "chelsea": ("skimage", "chelsea.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}
TRAIN = ("astronaut", "coffee", "motorcycle_left", "motorcycle_right", "hubble_deep_field", "retina", "ihc", "china")
HELD_OUT = ("chelsea", "rocket", "flower", "grace_hopper")  # a cat, a launch, a flower, a portrait
SPLITS = {"train": TRAIN, "held_out": HELD_OUT}


def _data_folder(package: str) -> Path:
    if package == "skimage":
        try:
            import skimage.data
        except ImportError:
            raise GencompressError("the photo suite needs scikit-image: pip install 'gencompress[dev]' (or pip install scikit-image)") from None
        return Path(skimage.data.__file__).parent
    if package == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images"
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def photo_path(name: str) -> Path:
    if name not in PHOTOS:
        raise GencompressError(f"no shipped photo {name!r}; known: {', '.join(PHOTOS)}")
    package, filename = PHOTOS[name]
    path = _data_folder(package) / filename
    if not path.is_file():
        raise GencompressError(f"photo {name!r} is not in the installed {package} ({path}); reinstall {package}")
    return path


def load_photo(name: str) -> torch.Tensor:
    """One photo as a float tensor 3 x H x W in [0, 1]."""
    from PIL import Image

    with Image.open(photo_path(name)) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def load_split(split: str) -> list[torch.Tensor]:
    if split not in SPLITS:
        raise GencompressError(f"no photo split {split!r}; known: {', '.join(SPLITS)}")
    return [load_photo(n) for n in SPLITS[split]]


def random_crops(photos: list[torch.Tensor], n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`n` seeded random crops (N x 3 x size x size in [0, 1]) from uniformly chosen photos,
    each flipped left-right with probability one half."""
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=generator))
        crop = photo[:, top:top + size, left:left + size]
        out[i] = crop.flip(-1) if bool(torch.randint(2, (1,), generator=generator)) else crop
    return out


def grid_crops(photos: list[torch.Tensor], size: int, per_side: int = 3) -> torch.Tensor:
    """Deterministic crops: a per_side x per_side grid of evenly spaced crops over each photo
    (they overlap where the photo is smaller than per_side crops), photo by photo."""
    crops = []
    for photo in photos:
        for top in np.linspace(0, photo.shape[1] - size, per_side).round().astype(int):
            for left in np.linspace(0, photo.shape[2] - size, per_side).round().astype(int):
                crops.append(photo[:, top:top + size, left:left + size])
    return torch.stack(crops)


def held_out_crops(size: int = 256, per_side: int = 3) -> torch.Tensor:
    """The judging set: grid crops of the held-out photos, N x 3 x size x size in [0, 1]."""
    return grid_crops(load_split("held_out"), size, per_side)


def write_held_out_crops(folder: str | Path, size: int = 256, per_side: int = 3, noise_sigma: float = 0.0,
                         seed: int = 0) -> list[Path]:
    """The held-out crops as PNGs in `folder` (for `--data folder:FOLDER`), with seeded Gaussian
    noise of `noise_sigma` (on the [0, 1] scale, clipped) when asked: a denoiser's real inputs.
    Refuses a folder that already holds files, so nothing of the user's is overwritten."""
    from PIL import Image

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise GencompressError(f"{folder} exists and is not an empty folder; name a new one")
    crops = held_out_crops(size, per_side)
    if noise_sigma:
        crops = (crops + noise_sigma * torch.randn(crops.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    names = [f"{name}-{i:02d}" for name in HELD_OUT for i in range(per_side * per_side)]
    for name, crop in zip(names, crops):
        path = folder / f"{name}.png"
        Image.fromarray((crop.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths

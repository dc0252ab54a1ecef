"""torchvision's ImageFolder + transforms on one image folder, in the main process (what one
DataLoader worker does): the paper's training views, RandomResizedCrop and the center crop."""
import random
import sys
import time

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from torchvision.datasets import ImageFolder

torch.set_num_threads(1)
root = sys.argv[1] + "/train"
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class ShorterSide:
    """Section 3.4: the shorter side resized to a random length in [256, 480]."""

    def __call__(self, img):
        return F.resize(img, random.randint(256, 480))


views = {
    "shorter side 256-480 + random 224 crop + flip (Section 3.4)": T.Compose(
        [ShorterSide(), T.RandomCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    ),
    "RandomResizedCrop(224) + flip": T.Compose(
        [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    ),
    "center 224 crop of the image resized to 256": T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)]
    ),
}
from PIL import Image
import io, os

paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
blobs = [open(p, "rb").read() for p in paths]
start, n = time.perf_counter(), 0
while time.perf_counter() - start < 2.0:
    Image.open(io.BytesIO(blobs[n % len(blobs)])).convert("RGB")
    n += 1
print(f"JPEG decoding alone (PIL, files in memory): {n / (time.perf_counter() - start):.0f} images/s")
for name, tf in views.items():
    ds = ImageFolder(root, transform=tf)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 3.0:
        x, _ = ds[n % len(ds)]
        n += 1
    print(f"torchvision, one worker, {name}: {n / (time.perf_counter() - start):.0f} images/s")

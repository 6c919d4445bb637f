"""Hugging Face `datasets` parquet files for revelio's dataset reader (src/features/hf_parquet.rs),
written by the real `datasets` library the way the Hub stores them.

Writes tests/fixtures/datasets/:
  hf/data/train-00000-of-00002.parquet, train-00001-of-00002.parquet, test-00000-of-00001.parquet
      an `Image` column (struct of PNG/JPEG bytes and path), a `ClassLabel` `label` with names
      ["zebra", "cat", "dog"] (ids deliberately not in name order), a `text` caption column;
      row groups of 3 rows (`to_parquet(batch_size=3)`), snappy (pyarrow's default codec); one
      train row holds bytes that are not an image
  hf/README.md          what a Hub snapshot has beside the data (must be ignored)
  cifar/train.parquet   CIFAR-100's layout: `img` plus two ClassLabels `fine_label`, `coarse_label`
                        (no `label` column)
  aircraft/train.parquet  FGVC-Aircraft's: `image` plus ClassLabels `family` and `variant` (no
                        `label`; the reference falls back to `variant`)
  expected.json         per split, per row in file order: label, caption, the image's format and
                        the RGB of pixel (0, 0) as PIL decodes it (null for the broken row); and
                        the class names

Needs `datasets` (and so pyarrow and Pillow); not the reference venv, which lacks them:

  python3 -m venv /tmp/hf && /tmp/hf/bin/pip install datasets==5.2.0
  /tmp/hf/bin/python tools/reference/make_dataset_fixtures.py
"""

import io
import json
import os

import datasets
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "datasets")
NAMES = ["zebra", "cat", "dog"]


def image(rng, fmt):
    arr = rng.randint(0, 256, (5, 6, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def main():
    rng = np.random.RandomState(7)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES), "text": datasets.Value("string")}
    )
    expected = {"class_names": NAMES}
    splits = {"train": 8, "test": 4}
    for split, n in splits.items():
        rows = {"image": [], "label": [], "text": []}
        for i in range(n):
            data = image(rng, "PNG" if i % 3 else "JPEG")
            if split == "train" and i == 5:
                data = b"these bytes are not an image"
            rows["image"].append({"bytes": data, "path": f"{split}_{i}.png"})
            rows["label"].append(int(rng.randint(0, 3)))
            rows["text"].append(f"a photo of a {NAMES[rows['label'][-1]]}, number {i}")
        ds = datasets.Dataset.from_dict(rows, features=features)
        shards = 2 if split == "train" else 1
        info = []
        for s in range(shards):
            part = ds.shard(num_shards=shards, index=s, contiguous=True)
            path = os.path.join(OUT, "hf", "data", f"{split}-{s:05d}-of-{shards:05d}.parquet")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            part.to_parquet(path, batch_size=3)
            for row in part.cast_column("image", datasets.Image(decode=False)):
                try:
                    img = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
                    px = list(img.getpixel((0, 0)))
                except Exception:  # the broken row
                    px = None
                fmt = row["image"]["bytes"][:4] == b"\x89PNG" and "png" or "jpeg"
                info.append({"label": row["label"], "caption": row["text"], "pixel": px, "format": fmt})
        expected[split] = info
    with open(os.path.join(OUT, "hf", "README.md"), "w") as f:
        f.write("A dataset card, as a Hub snapshot has one. Not data.\n")

    cifar = datasets.Dataset.from_dict(
        {"img": [image(rng, "PNG") for _ in range(3)], "fine_label": [4, 1, 0], "coarse_label": [1, 0, 1]},
        features=datasets.Features(
            {"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=[f"f{i}" for i in range(5)]),
             "coarse_label": datasets.ClassLabel(names=["c0", "c1"])}
        ),
    )
    os.makedirs(os.path.join(OUT, "cifar"), exist_ok=True)
    cifar.to_parquet(os.path.join(OUT, "cifar", "train.parquet"))
    expected["cifar_fine"] = [4, 1, 0]

    aircraft = datasets.Dataset.from_dict(
        {"image": [image(rng, "PNG") for _ in range(3)], "family": [1, 0, 1], "variant": [2, 0, 1]},
        features=datasets.Features(
            {"image": datasets.Image(), "family": datasets.ClassLabel(names=["A300", "Boeing 707"]),
             "variant": datasets.ClassLabel(names=["707-320", "A300B4", "727-200"])}
        ),
    )
    os.makedirs(os.path.join(OUT, "aircraft"), exist_ok=True)
    aircraft.to_parquet(os.path.join(OUT, "aircraft", "train.parquet"))
    expected["aircraft_variant"] = {"labels": [2, 0, 1], "names": ["707-320", "A300B4", "727-200"]}
    expected["datasets_version"] = datasets.__version__
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    total = sum(os.path.getsize(os.path.join(d, x)) for d, _, fs in os.walk(OUT) for x in fs)
    print(f"wrote {os.path.relpath(OUT, ROOT)} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

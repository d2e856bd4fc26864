"""Dataset sources, class mapping, split-then-augment without leakage, s3:// datasets and the shared data cache.

Every dataset here is a handful of tiny images written to tmp_path, so the whole file runs in well under two
minutes on two CPU cores (the Ray cache test trains one 1-epoch CNN on 16x16 images per study run).
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers.data import DatasetError, load_dataset, prepare_data
from workers.data.dermamnist import DERMAMNIST_CLASSES
from workers.data.ham10000 import HAM10000_CLASSES
from workers.data.prepare import split_dataset
from workers.data.sources import s3_cache_dir
from workers.data.synthetic import ISIC_CLASSES, class_counts

SIZE = [16, 16]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test mirrors s3:// data and generates synthetic data into its own cache folder."""
    monkeypatch.setenv("SKINLESION_CACHE", str(tmp_path / "cache"))


def write_image(path: Path, colour=None, size=(20, 24), seed: int = 0) -> Path:
    """A constant-colour PNG (``colour``) or a noise JPEG; size is (H, W)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if colour is not None:
        Image.new("RGB", (size[1], size[0]), tuple(int(c) for c in colour)).save(path)
    else:
        arr = np.random.default_rng(seed).integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
        Image.fromarray(arr).save(path, quality=90)
    return path


def distinct_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` colours at least 40 apart in some channel, so resampling never makes two of them equal."""
    levels = [20, 60, 100, 140, 180, 220]
    colours = list(itertools.product(levels, repeat=3))
    assert n <= len(colours)
    return colours[:n]


def make_isic_folder(root: Path, counts: dict[str, int], test_counts: dict[str, int] | None = None,
                     colours: list | None = None) -> Path:
    """Kaggle ISIC layout ``Train/<class>/*`` (and ``Test/<class>/*``); colours are used in order when given."""
    colour_iter = iter(colours) if colours is not None else None
    k = 0
    for split_name, table in (("Train", counts), ("Test", test_counts or {})):
        for name, n in table.items():
            (root / split_name / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                suffix = ".png" if colour_iter else ".jpg"
                write_image(root / split_name / name / f"img_{k:04d}{suffix}",
                            colour=next(colour_iter) if colour_iter else None, seed=k)
                k += 1
    return root


# ------------------------------------------------------------------------------------------------ isic_folder


def test_isic_folder_loads_train_and_test(tmp_path):
    root = make_isic_folder(tmp_path / "isic", {"melanoma": 3, "nevus": 4}, {"melanoma": 1, "nevus": 2})
    data = load_dataset({"source": "isic_folder", "path": str(root), "image_size": SIZE})
    assert data.class_names == ["melanoma", "nevus"]
    assert data.images.shape == (10, 16, 16, 3) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 1, 1]
    assert (data.source_split == "test").sum() == 3
    assert data.ids[0] == "train/melanoma/img_0000" and len(set(data.ids)) == 10
    assert data.skipped == [] and data.groups is None


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    root = make_isic_folder(tmp_path / "isic", {"a": 6, "b": 6})
    (root / "Train" / "a" / "garbage.jpg").write_bytes(b"this is not an image")
    good = (root / "Train" / "b" / "img_0006.jpg").read_bytes()
    (root / "Train" / "b" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "Train" / "b" / "notes.txt").write_text("ignored: not an image suffix")
    data = load_dataset({"source": "isic_folder", "path": str(root), "image_size": SIZE})
    assert len(data.labels) == 12
    assert sorted(data.skipped) == ["Train/a/garbage.jpg", "Train/b/truncated.jpg"]
    prepared = prepare_data({"source": "isic_folder", "path": str(root), "image_size": SIZE},
                            {"test_fraction": 0.25, "val_fraction": 0.0}, "none", {})
    assert len(prepared.meta["skipped_images"]) == 2 and prepared.meta["n_loaded"] == 12


def test_empty_class_is_a_clear_error(tmp_path):
    root = make_isic_folder(tmp_path / "isic", {"a": 4, "b": 4})
    (root / "Train" / "empty").mkdir()
    with pytest.raises(DatasetError, match="class 'empty' has no readable images"):
        load_dataset({"source": "isic_folder", "path": str(root), "image_size": SIZE})
    # a class whose only image is unreadable is empty too, and the message says images were skipped
    (root / "Train" / "empty" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match="1 image\\(s\\) were skipped"):
        load_dataset({"source": "isic_folder", "path": str(root), "image_size": SIZE})
    # dropping the class makes the dataset usable
    data = load_dataset({"source": "isic_folder", "path": str(root), "image_size": SIZE, "drop_classes": ["empty"]})
    assert data.class_names == ["a", "b"]


def test_empty_split_is_a_clear_error(tmp_path):
    root = make_isic_folder(tmp_path / "isic", {"a": 1, "b": 1})
    with pytest.raises(DatasetError, match="split"):
        prepare_data({"source": "isic_folder", "path": str(root), "image_size": SIZE},
                     {"test_fraction": 0.2, "val_fraction": 0.1}, "none", {})
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset({"source": "isic_folder", "path": str(tmp_path / "nowhere")})


# ------------------------------------------------------------------------------------------------ HAM10000


def make_ham10000(root: Path, lesions_per_class: int = 4, images_per_lesion=(1, 2, 3), csv_path: Path | None = None):
    """HAM10000 layout with images spread over part_1 / part_2; returns {image_id: lesion_id}."""
    rows, lesion_of, k = [], {}, 0
    for dx in HAM10000_CLASSES:
        for j in range(lesions_per_class):
            lesion = f"HAM_{dx}_{j:03d}"
            for _ in range(images_per_lesion[j % len(images_per_lesion)]):
                image_id = f"ISIC_{k:07d}"
                part = "HAM10000_images_part_1" if k % 2 else "HAM10000_images_part_2"
                write_image(root / part / f"{image_id}.jpg", seed=k, size=(18, 22))
                rows.append({"lesion_id": lesion, "image_id": image_id, "dx": dx, "dx_type": "histo", "age": "50",
                             "sex": "male", "localization": "back"})
                lesion_of[image_id] = lesion
                k += 1
    csv_path = csv_path or root / "HAM10000_metadata.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return lesion_of


def test_ham10000_loader_and_grouped_split(tmp_path):
    root = tmp_path / "ham"
    lesion_of = make_ham10000(root)
    (root / "HAM10000_images_part_1" / "ISIC_0000001.jpg").unlink()  # listed in the CSV but missing
    (root / "HAM10000_images_part_2" / "ISIC_0000002.jpg").write_bytes(b"corrupt")
    settings = {"source": "ham10000", "path": str(root), "image_size": SIZE}
    data = load_dataset(settings)
    assert data.class_names == HAM10000_CLASSES
    assert len(data.labels) == len(lesion_of) - 2 and len(data.skipped) == 2
    assert data.images.shape[1:] == (16, 16, 3)
    assert [lesion_of[i] for i in data.ids] == data.groups.tolist()
    assert np.bincount(data.labels).tolist() == [5, 7, 7, 7, 7, 7, 7]  # 7 per class, 2 of akiec lost

    split = {"test_fraction": 0.25, "val_fraction": 0.15, "seed": 3}
    prepared = prepare_data(settings, split, "none", {})
    lesions = {name: {lesion_of[i] for i in getattr(prepared, f"ids_{name}")} for name in ("train", "val", "test")}
    assert lesions["train"] and lesions["val"] and lesions["test"]
    assert not lesions["train"] & lesions["test"], "a lesion has images in both train and test"
    assert not lesions["train"] & lesions["val"] and not lesions["val"] & lesions["test"]
    assert prepared.meta["grouped_split"] is True
    n = len(data.labels)
    assert 0.12 * n <= len(prepared.ids_test) <= 0.4 * n  # roughly the asked-for share
    # the grouped split is deterministic for a seed
    again = prepare_data(settings, split, "none", {})
    assert again.ids_test == prepared.ids_test


def test_ham10000_metadata_override_and_binary_melanoma(tmp_path):
    root = tmp_path / "ham"
    make_ham10000(root, lesions_per_class=1, images_per_lesion=(2,), csv_path=tmp_path / "elsewhere" / "meta.csv")
    with pytest.raises(DatasetError, match="metadata"):
        load_dataset({"source": "ham10000", "path": str(root), "image_size": SIZE})
    data = load_dataset({"source": "ham10000", "path": str(root), "image_size": SIZE,
                         "metadata_csv": str(tmp_path / "elsewhere" / "meta.csv"), "classes": "binary_melanoma"})
    assert data.class_names == ["other", "melanoma"]
    assert np.bincount(data.labels).tolist() == [12, 2]
    assert data.groups is not None and len(data.groups) == 14


def test_ham10000_unknown_dx_is_an_error(tmp_path):
    root = tmp_path / "ham"
    write_image(root / "imgs" / "ISIC_1.jpg")
    (root / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\nHAM_1,ISIC_1,cancer\n")
    with pytest.raises(DatasetError, match="unknown dx 'cancer'"):
        load_dataset({"source": "ham10000", "path": str(root), "image_size": SIZE})


# ------------------------------------------------------------------------------------------------ ISIC 2019


def make_isic2019(root: Path, per_class: dict[str, int]) -> None:
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    lines = ["image," + ",".join(columns)]
    k = 0
    for name, n in per_class.items():
        for _ in range(n):
            image = f"ISIC_{k:07d}" + ("_downsampled" if k % 5 == 0 else "")
            write_image(root / "ISIC_2019_Training_Input" / f"{image}.jpg", seed=k, size=(20, 20))
            lines.append(image + "," + ",".join("1.0" if c == name else "0.0" for c in columns))
            k += 1
    write_image(root / "ISIC_2019_Training_Input" / "ISIC_9999999.jpg")  # listed nowhere: not part of the data
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")


def test_isic2019_drops_empty_columns_and_dropped_classes(tmp_path):
    root = tmp_path / "isic2019"
    make_isic2019(root, {"MEL": 4, "NV": 6, "BCC": 3, "SCC": 2})
    data = load_dataset({"source": "isic2019", "path": str(root), "image_size": SIZE})
    assert data.class_names == ["MEL", "NV", "BCC", "SCC"]  # AK, BKL, DF, VASC and UNK hold no image
    assert np.bincount(data.labels).tolist() == [4, 6, 3, 2]
    assert data.skipped == [] and "ISIC_9999999" not in data.ids
    assert data.ids[0] == "ISIC_0000000_downsampled"

    dropped = load_dataset({"source": "isic2019", "path": str(root), "image_size": SIZE, "drop_classes": ["SCC"]})
    assert dropped.class_names == ["MEL", "NV", "BCC"] and len(dropped.labels) == 13
    with pytest.raises(DatasetError, match="drop_classes: class 'UNK' is not in the data"):
        load_dataset({"source": "isic2019", "path": str(root), "image_size": SIZE, "drop_classes": ["UNK"]})
    binary = load_dataset({"source": "isic2019", "path": str(root), "image_size": SIZE, "classes": "binary_melanoma"})
    assert np.bincount(binary.labels).tolist() == [11, 4]


def test_isic2019_finds_each_image_once_in_path_order_skipping_hidden_files_and_linked_folders(tmp_path):
    from workers.data.sources import list_dataset

    root = tmp_path / "isic2019"
    make_isic2019(root, {"MEL": 2, "NV": 2})
    images = root / "ISIC_2019_Training_Input"
    first = images / "ISIC_0000001.jpg"
    for copy in (root / "A-c" / "ISIC_0000001.JPG", root / "A" / "b" / "ISIC_0000001.jpg"):
        write_image(copy, seed=9, size=(20, 20))  # "A/b" comes before "A-c" in path order (not in string order)
    write_image(images / ".ISIC_0000002.jpg", seed=8, size=(20, 20))
    (root / "ISIC_0000003.jpg").mkdir()  # a folder named like an image
    (tmp_path / "elsewhere").mkdir()
    write_image(tmp_path / "elsewhere" / "ISIC_0000000_downsampled.jpg", seed=7, size=(20, 20))
    (root / "0linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    listing = list_dataset({"source": "isic2019", "path": str(root), "image_size": SIZE})
    found = dict(zip(listing.ids, (Path(p) for p in listing.paths)))
    assert found["ISIC_0000001"] == root / "A" / "b" / "ISIC_0000001.jpg"
    assert found["ISIC_0000000_downsampled"] == images / "ISIC_0000000_downsampled.jpg"
    assert found["ISIC_0000002"] == images / "ISIC_0000002.jpg"
    assert found["ISIC_0000003"] == images / "ISIC_0000003.jpg" and first.is_file()
    assert listing.skip_names[1] == "A/b/ISIC_0000001.jpg (unreadable)"


def test_isic2019_without_lesion_ids_warns_that_the_split_is_not_grouped(tmp_path, caplog):
    root = tmp_path / "isic2019"
    make_isic2019(root, {"MEL": 8, "NV": 8})
    with caplog.at_level("WARNING"):
        prepared = prepare_data({"source": "isic2019", "path": str(root), "image_size": SIZE}, {"seed": 0}, "none", {})
    assert not prepared.meta["grouped_by_lesion"]
    assert "no lesion ids" in prepared.meta["split_warnings"][0] and "no lesion ids" in caplog.text


# ------------------------------------------------------------------------------------------------ DermaMNIST


def make_dermamnist(path: Path, size: int = 28, per_split=(14, 7, 7), channels: int | None = None, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for name, n in zip(("train", "val", "test"), per_split):
        shape = (n, size, size) if channels is None else (n, size, size, channels)
        arrays[f"{name}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{name}_labels"] = (np.arange(n) % 7).reshape(n, 1).astype(np.uint8)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_dermamnist_grayscale_28_resized(tmp_path):
    path = make_dermamnist(tmp_path / "dermamnist.npz")
    data = load_dataset({"source": "dermamnist", "path": str(path), "image_size": SIZE})
    assert data.class_names == DERMAMNIST_CLASSES and len(data.class_names) == 7
    assert data.images.shape == (28, 16, 16, 3) and data.images.dtype == np.uint8
    assert (data.images[..., 0] == data.images[..., 2]).all()  # grayscale copied to three channels
    assert [int((data.source_split == s).sum()) for s in ("train", "val", "test")] == [14, 7, 7]
    assert data.ids[-1] == "test/6"
    prepared = prepare_data({"source": "dermamnist", "path": str(path), "image_size": SIZE},
                            {"use_source_test": True, "test_fraction": 0.2, "val_fraction": 0.1}, "none", {})
    assert sorted(prepared.ids_test) == sorted(f"test/{i}" for i in range(7))
    assert not any(i.startswith("test/") for i in prepared.ids_train + prepared.ids_val)
    # RGB 64x64 files load too, and a folder holding one file is accepted
    rgb = make_dermamnist(tmp_path / "rgb" / "dermamnist_64.npz", size=64, channels=3)
    data = load_dataset({"source": "dermamnist", "path": str(rgb.parent), "image_size": SIZE,
                         "classes": ["melanoma", "melanocytic nevi"]})
    assert data.class_names == ["melanoma", "melanocytic nevi"] and data.images.shape[1:] == (16, 16, 3)


@pytest.mark.parametrize("override, message", [
    ({"val_labels": None}, "no key 'val_labels'"),
    ({"train_images": np.zeros((14, 28), np.uint8)}, "train_images has shape"),
    ({"test_images": np.zeros((7, 28, 28, 2), np.uint8)}, "test_images has shape"),
    ({"train_labels": np.zeros((13, 1), np.uint8)}, "train_labels has shape"),
    ({"val_images": np.zeros((7, 32, 32), np.uint8)}, "all splits must share one image size"),
    ({"test_labels": np.full((7, 1), 9, np.uint8)}, "labels are 0..6"),
])
def test_dermamnist_wrong_arrays_are_clear_errors(tmp_path, override, message):
    path = make_dermamnist(tmp_path / "bad.npz", **override)
    with pytest.raises(DatasetError, match=message):
        load_dataset({"source": "dermamnist", "path": str(path), "image_size": SIZE})


def test_dermamnist_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset({"source": "dermamnist", "path": str(tmp_path / "x.npz")})


# ------------------------------------------------------------------------------------------------ synthetic


def test_synthetic_is_deterministic_and_imbalanced(tmp_path, monkeypatch):
    settings = {"source": "synthetic", "image_size": SIZE, "samples_per_class": 10, "synthetic_seed": 7}
    monkeypatch.setenv("SKINLESION_CACHE", str(tmp_path / "cache_a"))
    a = load_dataset(settings)
    monkeypatch.setenv("SKINLESION_CACHE", str(tmp_path / "cache_b"))  # generated again from scratch
    b = load_dataset(settings)
    other = load_dataset({**settings, "synthetic_seed": 8})
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and a.ids == b.ids
    assert not np.array_equal(a.images, other.images)
    assert a.class_names == ISIC_CLASSES and len(a.class_names) == 9 and a.synthetic
    train_counts = np.bincount(a.labels[a.source_split == "train"], minlength=9).tolist()
    assert train_counts == class_counts(10) and len(set(train_counts)) > 3  # imbalanced like the real set


# ------------------------------------------------------------------------------------------------ class mapping


def test_class_mapping(tmp_path):
    root = make_isic_folder(tmp_path / "isic", {"melanoma": 3, "nevus": 2, "dermatofibroma": 4})
    base = {"source": "isic_folder", "path": str(root), "image_size": SIZE}
    binary = load_dataset({**base, "classes": "binary_melanoma"})
    assert binary.class_names == ["other", "melanoma"] and np.bincount(binary.labels).tolist() == [6, 3]
    subset = load_dataset({**base, "classes": ["nevus", "melanoma"]})
    assert subset.class_names == ["melanoma", "nevus"] and len(subset.labels) == 5
    assert all("dermatofibroma" not in i for i in subset.ids)
    with pytest.raises(DatasetError, match="class 'keloid' is not in the data"):
        load_dataset({**base, "classes": ["keloid"]})
    with pytest.raises(DatasetError, match="binary_melanoma needs"):
        load_dataset({**base, "classes": "binary_melanoma", "drop_classes": ["melanoma"]})
    with pytest.raises(DatasetError, match="unknown source"):
        load_dataset({"source": "imagenet"})


# ------------------------------------------------------------------------------------------------ split, then augment


def _colour(img: np.ndarray) -> tuple[int, ...]:
    """The colour an image (or an augmented copy of a constant-colour image) mostly shows."""
    return tuple(int(v) for v in np.median(img.reshape(-1, 3), axis=0))


def _sharded(tmp_path, name, *args):
    """Prepare as shards (several small shards) and open them, checksums verified."""
    from workers.data import open_sharded, prepare_shards

    prepare_shards(*args, tmp_path / name, rows_per_shard=8, shuffle_block=4)
    return open_sharded(tmp_path / name)


def test_split_then_augment_never_leaks(tmp_path):
    counts = {"a": 14, "b": 9, "c": 6}
    colours = distinct_colours(sum(counts.values()))
    root = make_isic_folder(tmp_path / "isic", counts, colours=colours)
    dataset = {"source": "isic_folder", "path": str(root), "image_size": SIZE}
    split = {"test_fraction": 0.25, "val_fraction": 0.15, "seed": 1}
    target = 20
    plain = _sharded(tmp_path, "plain", dataset, split, "none", {})
    aug = _sharded(tmp_path, "aug", dataset, split, "augmentor", {"augmentor": {"mode": "top_up", "samples_per_class": target}})
    images = {name: {s: dict(zip(getattr(d, f"ids_{s}"), d.split_images(s).read_all())) for s in ("train", "val", "test")}
              for name, d in (("plain", plain), ("aug", aug))}

    # every source image is one unique colour
    loaded = load_dataset(dataset)
    assert len({_colour(x) for x in loaded.images}) == len(colours)

    # validation and test are exactly the un-augmented held-out images
    for name in ("val", "test"):
        assert getattr(aug, f"ids_{name}") == getattr(plain, f"ids_{name}")
        assert all(np.array_equal(images["aug"][name][i], images["plain"][name][i]) for i in getattr(plain, f"ids_{name}"))
    originals = [i for i in aug.ids_train if not i.startswith("aug:")]
    assert sorted(originals) == sorted(plain.ids_train)
    assert all(np.array_equal(images["aug"]["train"][i], images["plain"]["train"][i]) for i in originals)

    held_out = {_colour(x) for s in ("val", "test") for x in images["aug"][s].values()}
    train_sources = {_colour(x) for x in images["plain"]["train"].values()}
    assert not held_out & train_sources, "a validation/test image is also a training image"
    assert not set(aug.ids_val + aug.ids_test) & set(aug.ids_train)

    generated = [(i, label) for i, label in zip(aug.ids_train, aug.y_train) if i.startswith("aug:")]
    assert len(generated) > 0
    plain_labels = dict(zip(plain.ids_train, plain.y_train))
    for aug_id, label in generated:  # each augmented image names its training source, of its own class
        source_id = aug_id.split(":", 1)[1].rsplit(":", 1)[0]
        colour = _colour(images["aug"]["train"][aug_id])
        assert source_id in plain_labels and _colour(images["plain"]["train"][source_id]) == colour
        assert plain_labels[source_id] == label, "augmented image derived from another class"
        assert colour in train_sources and colour not in held_out

    # only the training counts grow, and every class reaches the target
    before = np.bincount(plain.y_train, minlength=3)
    after = np.bincount(aug.y_train, minlength=3)
    assert (before < target).all() and after.tolist() == [target] * 3
    assert aug.meta["train_counts_before_augmentation"] == before.tolist()
    assert aug.meta["augmented_images"] == int((target - before).sum())
    assert aug.meta["augmentor"] == {"mode": "top_up", "samples_per_class": target}
    assert len(aug.y_val) == len(plain.y_val) and len(aug.y_test) == len(plain.y_test)


def test_grouped_split_keeps_groups_apart_for_any_seed():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"L{i}" for i in range(60)], rng.integers(1, 4, 60))
    labels = np.array([int(g[1:]) % 3 for g in groups])
    for seed in range(5):
        train, val, test = split_dataset(labels, None, {"test_fraction": 0.2, "val_fraction": 0.1, "seed": seed}, groups)
        sets = [set(groups[idx]) for idx in (train, val, test)]
        assert all(sets) and not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
        assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(labels)))


# ------------------------------------------------------------------------------------------------ s3://


def _upload_tree(endpoint: str, bucket: str, root: Path, prefix: str) -> int:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    n = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(root).as_posix()}", Body=path.read_bytes())
            n += 1
    return n


def test_s3_prefix_is_mirrored_then_loaded(tmp_path, s3_endpoint, s3_bucket, monkeypatch):
    import boto3

    root = make_isic_folder(tmp_path / "isic", {"melanoma": 3, "nevus": 3}, {"melanoma": 1, "nevus": 1})
    _upload_tree(s3_endpoint, s3_bucket, root, "datasets/isic")
    uri = f"s3://{s3_bucket}/datasets/isic"
    settings = {"source": "isic_folder", "path": uri, "endpoint_url": s3_endpoint, "image_size": SIZE}
    remote = load_dataset(settings)
    local = load_dataset({**settings, "path": str(root)})
    assert remote.class_names == local.class_names and remote.ids == local.ids
    assert np.array_equal(remote.images, local.images) and np.array_equal(remote.labels, local.labels)
    mirror = s3_cache_dir(uri, s3_endpoint)
    assert (mirror / ".complete").is_file() and (mirror / "Train" / "melanoma").is_dir()
    assert mirror.parent == tmp_path / "cache" / "s3"

    # the finished mirror is reused: it loads with the bucket emptied
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for obj in client.list_objects_v2(Bucket=s3_bucket)["Contents"]:
        client.delete_object(Bucket=s3_bucket, Key=obj["Key"])
    again = load_dataset(settings)
    assert np.array_equal(again.images, remote.images)

    # an empty prefix is a clear error; the endpoint may also come from the environment
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    with pytest.raises(DatasetError, match="no objects under"):
        load_dataset({"source": "isic_folder", "path": f"s3://{s3_bucket}/nothing-here"})


def test_s3_single_object_and_env_endpoint(tmp_path, s3_endpoint, s3_bucket, monkeypatch):
    import boto3

    path = make_dermamnist(tmp_path / "dermamnist.npz")
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=s3_bucket, Key="medmnist/dermamnist.npz", Body=path.read_bytes())
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    data = load_dataset({"source": "dermamnist", "path": f"s3://{s3_bucket}/medmnist/dermamnist.npz", "image_size": SIZE})
    assert data.images.shape == (28, 16, 16, 3)
    assert np.array_equal(data.images, load_dataset({"source": "dermamnist", "path": str(path), "image_size": SIZE}).images)


# ------------------------------------------------------------------------------------------------ shared cache (Ray)


@pytest.mark.slow
def test_prepared_data_cache_is_reused_across_runs(ray_session, tiny_spec, tmp_path):
    from orchestrator import Study
    from workers.storage import open_store

    spec = tiny_spec(grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["cpu"],
                           "augmentation": ["none", "augmentor"]})
    messages: list[str] = []
    first = Study(spec).run(show_progress=False, notify=messages.append)
    second = Study(spec).run(show_progress=False, notify=messages.append)
    assert first.counts == {"completed": 2} and second.counts == {"completed": 2}
    assert first.paths.run_id != second.paths.run_id

    store = open_store(str(tmp_path / "store"))
    info1 = json.loads(store.get_text(f"{spec.name}/{first.paths.run_id}/run.json"))
    info2 = json.loads(store.get_text(f"{spec.name}/{second.paths.run_id}/run.json"))
    assert len(info1["data_cache"]) == 2  # "none" and "augmentor" prepare different arrays
    assert not any(c["hit"] for c in info1["data_cache"].values())
    assert info2["data_cache"].keys() == info1["data_cache"].keys()
    assert all(c["hit"] for c in info2["data_cache"].values()), info2["data_cache"]
    cached = [k for k in store.list("cache/prepared/") if k.endswith("/index.json")]
    assert sorted(cached) == sorted(f"cache/prepared/{k}/index.json" for k in info1["data_cache"])
    assert any(m.startswith("Data cache: 2 hit(s), 0 prepared") and "s saved" in m for m in messages), messages
    assert all(c["saved_s"] > 0 and c["meta"]["n_loaded"] > 0 for c in info2["data_cache"].values())

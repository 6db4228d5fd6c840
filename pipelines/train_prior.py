"""Make a renderer prior that `train-person --prior DIR` starts a new person's renderer from.

    python cli.py train-prior --from-person demo -o priors/demo

This version takes the first stage (neural texture + U-Net) of a person already fitted with
train-person; the shared UV layout lets another person start from it. Training one prior on
many people at once is not in this version. The person folder is only read; DIR must be new or
a prior folder this command made (it is replaced only with --overwrite).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from avatar.errors import AvatarError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-person", required=True, metavar="NAME",
                   help="a fitted person (a name or a person folder) whose renderer becomes the prior")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="the prior folder to write (prior.safetensors + config.json)")
    p.add_argument("--overwrite", action="store_true", help="replace a prior folder made before")


def run(args: argparse.Namespace) -> int:
    from avatar.io import person as person_io
    from avatar.io.files import sha256_file
    from avatar.render.prior import CONFIG, WEIGHTS, save_prior
    from avatar.render.store import load_weights
    out = check_output_folder(args.output, args.overwrite, {CONFIG, WEIGHTS})
    folder, config, _ = person_io.load_complete(args.from_person)
    weights = folder / person_io.RENDERER
    model = load_weights(weights)
    info = {"people": [folder.name], "made_from": {"person": folder.name,
                                                   "renderer_sha256": sha256_file(weights),
                                                   "metrics": (config.get("metrics") or {}).get("renderer")}}
    save_prior(out, model.float(), info)
    print(f"wrote the renderer prior {out} (from {folder.name}); fit a new person from it with "
          f"train-person --prior {out}")
    return 0


def check_output_folder(out: Path, overwrite: bool, ours: set[str]) -> Path:
    """`out` if it is new or empty, or a prior folder (only our files) and overwrite is given."""
    if out.exists() and not out.is_dir():
        raise AvatarError(f"{out} is a file; give a folder for the prior")
    present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if present - ours:
        raise AvatarError(f"{out} holds other files ({sorted(present - ours)[0]}, ...); give a new "
                          "folder for the prior")
    if present and not overwrite:
        raise AvatarError(f"{out} already holds a prior; give --overwrite to replace it")
    return out

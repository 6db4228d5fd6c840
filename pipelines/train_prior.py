"""Make a renderer prior that `train-person --prior DIR` starts a new person's renderer from.

    python cli.py train-prior --person alice --person bob --person carol -o priors/three --steps 3000
    python cli.py train-prior --from-person demo -o priors/demo

--person (repeat it): train one U-Net shared by all the given fitted people (each with its own
neural texture in the shared UV layout) and write it with the mean texture; resumable (the run
folder in --runs-dir; rerun the same command), with a curve, samples and each person's held-out
PSNR at the end. --from-person: take the first stage of one person fitted with train-person.
Person folders are only read; DIR must be new or a prior folder this command made (it is
replaced only with --overwrite).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from avatar.errors import AvatarError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipelines.say import add_device_argument
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--person", action="append", metavar="NAME",
                        help="a fitted person (a name or a person folder) to train on; repeat it")
    source.add_argument("--from-person", metavar="NAME",
                        help="a fitted person whose renderer's first stage becomes the prior")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="the prior folder to write (prior.safetensors + config.json)")
    p.add_argument("--steps", type=int, default=3000, help="training steps with --person (default 3000)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="where the run folder goes (default: $AVATAR_HOME/runs)")
    add_device_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace a prior folder made before")


def run(args: argparse.Namespace) -> int:
    from avatar.render.prior import CONFIG, WEIGHTS
    out = check_output_folder(args.output, args.overwrite, {CONFIG, WEIGHTS})
    if args.from_person:
        return prior_from_person(args.from_person, out)
    return prior_from_people(args, out)


def prior_from_people(args: argparse.Namespace, out: Path) -> int:
    import hashlib
    from avatar.io import person as person_io
    from avatar.render.train_prior import train_prior
    if args.steps < 1:
        raise AvatarError(f"--steps {args.steps} must be at least 1")
    folders = [person_io.person_dir(name) for name in args.person]   # tracked is enough
    key = hashlib.sha256("|".join(str(f.resolve()) for f in folders).encode()).hexdigest()[:10]
    runs = Path(args.runs_dir) if args.runs_dir else person_io.runs_root()
    run_dir = runs / f"prior-{len(folders)}people-{key}"
    print(f"prior run folder: {run_dir} (curve, samples, resumable)")
    metrics = train_prior(folders, out, run_dir, steps=args.steps, device=args.device)
    for name, m in metrics.items():
        print(f"  {name}: held-out PSNR {m.get('psnr', float('nan')):.2f} dB")
    print(f"wrote the renderer prior {out}; fit a new person from it with train-person --prior {out}")
    return 0


def prior_from_person(name: str, out: Path) -> int:
    from avatar.io import person as person_io
    from avatar.io.files import sha256_file
    from avatar.render.prior import save_prior
    from avatar.render.store import load_weights
    folder, config, _ = person_io.load_complete(name)
    weights = folder / person_io.RENDERER
    info = {"people": [folder.name], "made_from": {"person": folder.name,
                                                   "renderer_sha256": sha256_file(weights),
                                                   "metrics": first_stage_metrics(config)}}
    save_prior(out, load_weights(weights).float(), info)
    print(f"wrote the renderer prior {out} (from {folder.name}); fit a new person from it with "
          f"train-person --prior {out}")
    return 0


def check_output_folder(out: Path, overwrite: bool, ours: set[str]) -> Path:
    """`out` if it is new or empty, or a prior folder (only our files) and overwrite is given;
    like every output folder, not inside a person folder or the shipped checkpoints."""
    from avatar.io.output import check_output_folder as check_folder
    check_folder(out)
    present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if present - ours:
        raise AvatarError(f"{out} holds other files ({sorted(present - ours)[0]}, ...); give a new "
                          "folder for the prior")
    if present and not overwrite:
        raise AvatarError(f"{out} already holds a prior; give --overwrite to replace it")
    return out


def first_stage_metrics(config: dict) -> dict | None:
    """The person's held-out first-stage metrics as person.json records them (None if absent)."""
    held = (config.get("metrics") or {}).get("renderer_holdout")
    if not isinstance(held, dict):
        return None
    return {k: held[k] for k in ("psnr", "ssim", "psnr_band", "psnr_mouth", "step") if k in held}

"""Checkpoint files: one dict per file that rebuilds its model, loadable with
``torch.load(path, weights_only=True)``.

Keys: ``model_kind`` and ``model_args`` (see build_model), ``model_state`` (the last
epoch's weights, which a resumed run continues from), ``best_state`` and ``best_epoch``
(the weights of the epoch with the lowest validation loss, which later stages and
sampling use), ``optimizer_state``, ``epoch`` (epochs done), ``history``, ``best_val_loss``,
``settings`` (the run's resolved settings), ``presets`` (preset files applied),
``stage_seconds`` (the stage's wall time up to its last epoch, summed over resumed runs),
and for later stages the paths of the checkpoints and dataset they were trained on.
"""
import os

import torch

from utils.errors import UserError
from utils.runtime import atomic_path, file_digest, to_channels_last


def build_model(kind, args):
    from models import MODELS
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODELS)}")
    return MODELS[kind](**args)


def load_model(ckpt, device="cpu"):
    """Rebuild the model a checkpoint describes, with the weights of its best validation
    epoch, in eval mode, in the memory order it was trained in (channels-last convolutions
    round differently)."""
    model = build_model(ckpt["model_kind"], ckpt["model_args"])
    if ckpt.get("channels_last"):
        to_channels_last(model)
    load_weights(model, ckpt, ckpt.get("best_state", ckpt["model_state"]))
    return model.to(device).eval()


def load_weights(model, ckpt, state):
    """``state`` (weights from ``ckpt``) into ``model``; weights of another shape or name,
    from an earlier version of the model, are a UserError that says to train it again."""
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UserError(f"the checkpoint's weights do not fit the {ckpt['model_kind']} this code builds "
                        f"(an earlier version of it wrote them): run "
                        f"{WRITTEN_BY.get(ckpt['model_kind'], 'its stage')} again") from None


def model_spec(model):
    """What rebuilds ``model``: its class name and constructor arguments."""
    return {"model_kind": type(model).__name__, "model_args": dict(model.args)}


def save_checkpoint(path, state):
    """torch.save ``state`` to ``path`` through a temporary file."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


WRITTEN_BY = {  # model kind -> the stage script that trains it
    "ConvVAE": "train_vcae.py", "LatentLSTM": "train_lstm.py", "ConvAutoencoder": "train_cae.py",
    "Deconvolver": "train_deconv.py", "FeatureVAE": "train_vae_on_convs.py",
    "FeatureConvVAE": "train_vae_on_convs.py",
}


def load_checkpoint(path, made_by):
    """Load a checkpoint written by ``made_by`` (a stage script's name), weights only, onto
    the CPU. A file that is no checkpoint of this project, or one another stage wrote, is a
    UserError that says what was expected."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}: run {made_by} first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holds arbitrary objects
        raise UserError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}): run {made_by} again") from None
    if not isinstance(ckpt, dict) or "model_kind" not in ckpt or "model_state" not in ckpt:
        raise UserError(f"{path} is not a checkpoint of this project (a bare state_dict or another "
                        f"file): pass the checkpoint {made_by} writes")
    wrote = WRITTEN_BY.get(ckpt["model_kind"], "another program")
    if made_by in WRITTEN_BY.values() and wrote != made_by:
        raise UserError(f"{path} holds a {ckpt['model_kind']} from {wrote}, where a checkpoint from "
                        f"{made_by} belongs: pass the file {made_by} wrote")
    return ckpt


def record_inputs(checkpoint, **inputs):
    """Checkpoint entries naming the files a stage read ({setting: path}): each path as
    given, the same path relative to ``checkpoint``'s folder (``<setting>_from_here``, so
    the chain can be followed from any working directory), and for checkpoints the
    SHA-256 of their bytes (``<setting>_digest``, see check_lineage)."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    entries = {}
    for key, path in inputs.items():
        entries[key] = path
        entries[f"{key}_from_here"] = os.path.relpath(os.path.abspath(path), folder)
        if key.endswith("checkpoint"):
            entries[f"{key}_digest"] = file_digest(path)
    return entries


def recorded_path(ckpt, ckpt_path, key):
    """The file ``ckpt`` (loaded from ``ckpt_path``) recorded under ``key``: the path as
    given when it exists from here, else the same file found from the checkpoint's folder."""
    path = ckpt[key]
    from_here = ckpt.get(f"{key}_from_here")
    if os.path.exists(path) or from_here is None:
        return path
    beside = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(ckpt_path)), from_here))
    return beside if os.path.exists(beside) else path


def stage_times(ckpt, ckpt_path):
    """What made ``ckpt`` and each checkpoint it was trained on, upstream first: a list of
    {"stage", "checkpoint", "epochs", "presets", "seconds"} (seconds None where a checkpoint
    predates the record). Upstream checkpoints no longer where recorded are left out."""
    found, queue = {}, [(ckpt_path, ckpt)]
    while queue:
        path, entry = queue.pop()
        found[os.path.abspath(path)] = {
            "stage": WRITTEN_BY.get(entry.get("model_kind"), "?"), "checkpoint": path,
            "epochs": entry.get("epoch"), "presets": list(entry.get("presets", [])),
            "seconds": entry.get("stage_seconds")}
        for key in sorted(k for k in entry if k.endswith("_checkpoint") and isinstance(entry[k], str)):
            upstream = recorded_path(entry, path, key)
            if os.path.abspath(upstream) not in found and os.path.isfile(upstream):
                try:
                    # memory-mapped: only the entries are read, not the weights
                    queue.append((upstream, torch.load(upstream, map_location="cpu", weights_only=True,
                                                       mmap=True)))
                except Exception:  # unreadable now: its own stage says so when it is used
                    continue
    return list(found.values())[::-1]


def check_lineage(ckpt, ckpt_path, key, path, made_by):
    """Refuse an upstream checkpoint at ``path`` whose bytes differ from those ``ckpt`` (at
    ``ckpt_path``) recorded under ``<key>_digest`` when it was trained: its results would be
    silently wrong. ``made_by`` is the script that wrote ``ckpt``, to be run again."""
    recorded = ckpt.get(f"{key}_digest")
    if recorded and recorded != file_digest(path):
        raise UserError(f"{path} is not the {key.replace('_', ' ')} that {ckpt_path} was trained on "
                        f"(it was retrained or replaced since): run {made_by} again, or pass the "
                        "checkpoint it was trained on")


def resume_state(path, model, optimizer, made_by):
    """Restore model and optimizer from ``path``; return (epochs done, history, checkpoint)."""
    ckpt = load_checkpoint(path, made_by)
    spec = model_spec(model)
    if ckpt.get("model_kind") != spec["model_kind"] or ckpt.get("model_args") != spec["model_args"]:
        raise UserError(f"cannot resume from {path}: it holds {ckpt.get('model_kind')} "
                        f"{ckpt.get('model_args')}, the settings build {spec['model_kind']} "
                        f"{spec['model_args']}; use the same settings or --resume=false")
    load_weights(model, ckpt, ckpt["model_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    return ckpt["epoch"], ckpt["history"], ckpt

"""Checkpoint tamperings shared by the Hub tests and the reliability suite: each entry of
`REFUSALS` damages a saved checkpoint folder and names the error pattern strict loading must raise."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def write_config(folder: Path, edit) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def edit_tensors(folder: Path, edit) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def _drop_bias(t):
    del t["members.0.skip.bias"]


def _nan(t):
    t["members.1.trunk.1.weight"][0, 0] = float("nan")


def _truncate(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _link_outside(folder: Path) -> None:
    outside = folder.parent / "elsewhere.safetensors"
    shutil.move(folder / "model.safetensors", outside)
    (folder / "model.safetensors").symlink_to(outside)


def _price(cfg):
    next(b for b in cfg["space"]["backends"] if b["name"] == "large")["input_price"] += 1.0


def _style(cfg):
    for b in cfg["space"]["backends"]:
        b["parameters"]["prompt_style"] = ["bogus"]
    for a in cfg["space"]["actions"]:
        a["parameters"]["prompt_style"] = "bogus"
    cfg["prompt_style_order"] = ["bogus"]


def _extra_action(cfg):
    cfg["space"]["backends"][0]["parameters"]["temperature"].append(0.5)
    name = cfg["space"]["backends"][0]["name"]
    cfg["space"]["actions"].append(
        {"backend": name, "parameters": {"prompt_style": "cot", "temperature": 0.5}}
    )


REFUSALS = {
    "pickle .bin": (
        lambda d: (d / "extra.bin").write_bytes(b"\x80\x04"),
        r"'extra\.bin', a pickle-format file",
    ),
    "pickle .pt": (lambda d: (d / "weights.pt").write_bytes(b"x"), r"'weights\.pt', a pickle-format file"),
    "pickle .pkl in subfolder": (
        lambda d: (d / "encoder").mkdir() or (d / "encoder" / "head.pkl").write_bytes(b"x"),
        r"'encoder/head\.pkl', a pickle-format file",
    ),
    "missing weights file": (lambda d: (d / "model.safetensors").unlink(), r"has no model\.safetensors"),
    "truncated safetensors": (
        _truncate,
        r"model\.safetensors \(\d+ bytes\) is not a readable safetensors file",
    ),
    "garbage safetensors": (
        lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64),
        r"not a readable safetensors file",
    ),
    "missing tensor": (
        lambda d: edit_tensors(d, _drop_bias),
        r"missing tensors \['members\.0\.skip\.bias'\], unexpected \[\]",
    ),
    "unexpected tensor": (
        lambda d: edit_tensors(d, lambda t: t.update(extra=torch.zeros(2))),
        r"missing tensors \[\], unexpected \['extra'\]",
    ),
    "NaN in weights": (lambda d: edit_tensors(d, _nan), r"'members\.1\.trunk\.1\.weight' contains NaN"),
    "wrong dtype": (
        lambda d: edit_tensors(d, lambda t: t.update({"feature_mean": t["feature_mean"].double()})),
        r"'feature_mean' has dtype torch\.float64, expected torch\.float32",
    ),
    "zero feature_std": (
        lambda d: edit_tensors(d, lambda t: t["feature_std"].zero_()),
        r"'feature_std' must be > 0",
    ),
    "config shape mismatch": (
        lambda d: write_config(d, lambda c: c["router_config"].update(hidden=24)),
        r"tensor '[\w.]+' has shape \(\d+(, \d+)*\), expected \(\d+(, \d+)*\) from the config",
    ),
    "catalog grows an action": (
        lambda d: write_config(d, _extra_action),
        r"has shape .* expected .* from the config's catalog",
    ),
    "catalog price tampered": (
        lambda d: write_config(d, _price),
        r"config's catalog disagrees with the weights: tensor 'backend_prices'",
    ),
    "unknown prompt style": (
        lambda d: write_config(d, _style),
        r"unknown prompt style 'bogus'.*templates for \[",
    ),
    "prompt style order": (
        lambda d: write_config(d, lambda c: c.update(prompt_style_order=["answer_only", "cot"])),
        r"`prompt_style_order` \['answer_only', 'cot'\] does not match the catalog's prompt styles \['cot'\]",
    ),
    "newer format": (
        lambda d: write_config(d, lambda c: c.update(format_version=99)),
        r"format version 99 is newer than this HAPS supports \(1; .*upgrade haps",
    ),
    "format version not an int": (
        lambda d: write_config(d, lambda c: c.update(format_version="1")),
        r"no valid `format_version` \(expected an integer >= 1, found '1'\)",
    ),
    "not JSON": (lambda d: (d / "config.json").write_text("{oops"), r"config\.json is not valid JSON"),
    "not a HAPS config": (
        lambda d: write_config(d, lambda c: c.update(library="setfit")),
        r"'setfit' checkpoint, not a HAPS router",
    ),
    "bad catalog": (
        lambda d: write_config(d, lambda c: c["space"].pop("actions")),
        r"invalid catalog or router config: .*`actions`",
    ),
    "bad cost weight": (
        lambda d: write_config(d, lambda c: c.update(default_cost_weight=-1)),
        r"`default_cost_weight` must be a finite number >= 0, found -1",
    ),
    "link outside the folder": (_link_outside, r"'model\.safetensors' is a link to .*outside the checkpoint"),
}

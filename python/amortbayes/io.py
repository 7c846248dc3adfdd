"""Save and load a trained amortizer: a folder with ``config.json`` and ``weights.pt`` (no pickled code).

``config.json`` records the file format, the package version, the amortizer class, the
model description (names, ranges, configuration) and the network settings; ``weights.pt``
holds the state dict, loaded with ``weights_only=True``.  Loading rebuilds the amortizer
from the JSON and refuses, with a message that says why, a folder written for another
model (when ``model=`` is given) or by an incompatible version of amortbayes.

Example:
    >>> import tempfile
    >>> from amortbayes.models import ConjugateGaussian
    >>> from amortbayes.amortizers import PosteriorAmortizer
    >>> amortizer = PosteriorAmortizer(ConjugateGaussian())
    >>> folder = tempfile.mkdtemp()
    >>> path = save(amortizer, folder)
    >>> type(load(folder, model=ConjugateGaussian())).__name__
    'PosteriorAmortizer'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from amortbayes._version import __version__

FORMAT = "amortbayes-amortizer"
FORMAT_VERSION = 5  # 2: DeepSet exact statistics; 3: multilevel pooled SDs; 4: the data range seen in training; 5: between-group SDs and correlations
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


def _registry() -> dict[str, type]:
    from amortbayes import amortizers

    return {name: getattr(amortizers, name) for name in amortizers.AMORTIZER_CLASSES}


def save(amortizer: torch.nn.Module, path: str | Path) -> Path:
    """Write ``amortizer`` to the folder ``path`` (created if needed); returns the folder."""
    cls = type(amortizer).__name__
    if cls not in _registry():
        raise TypeError(f"cannot save a {cls}; known amortizers are {sorted(_registry())}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "amortbayes_version": __version__,
        "class": cls,
        "config": amortizer.config(),
    }
    regularizer = getattr(amortizer, "regularizer", None)
    if regularizer is not None:  # how it was trained (amortbayes.robust.FIMTrace)
        meta["regularizer"] = regularizer.to_dict()
    state = {k: v.detach().cpu() for k, v in amortizer.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def read_config(path: str | Path) -> dict[str, Any]:
    """The saved metadata, after checking format and version."""
    folder = Path(path)
    cfg_file = folder / CONFIG_FILE
    if not cfg_file.exists():
        raise ValueError(f"{folder} is not a saved amortizer: {CONFIG_FILE} is missing")
    try:
        meta = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_file} is not valid JSON: {err}") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg_file} was not written by amortbayes.save()")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder} uses amortizer file format {meta.get('format_version')} (amortbayes "
            f"{meta.get('amortbayes_version')}); this amortbayes {__version__} reads format "
            f"{FORMAT_VERSION}. Load it with the amortbayes version that wrote it, or retrain."
        )
    return meta


def load(path: str | Path, model: Any = None, device: str = "cpu") -> torch.nn.Module:
    """Rebuild a saved amortizer; with ``model=``, check the folder was written for that model.

    Raises:
        ValueError: not a saved amortizer, incompatible version, written for another model,
            or weights that do not fit the configuration.
    """
    folder = Path(path)
    meta = read_config(folder)
    classes = _registry()
    if meta.get("class") not in classes:
        raise ValueError(f"{folder} holds an unknown amortizer class {meta.get('class')!r}")
    if model is not None:
        _check_model(meta, model, folder)
    amortizer = classes[meta["class"]].from_config(meta["config"])
    state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    try:
        amortizer.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {folder} do not match its config.json: {err}") from err
    if meta.get("regularizer") is not None:
        from amortbayes.robust.fim import regularizer_from_dict

        amortizer.regularizer = regularizer_from_dict(meta["regularizer"])
    return amortizer.to(device).eval()


def _check_model(meta: dict[str, Any], model: Any, folder: Path) -> None:
    saved = meta["config"]["model"]
    info = model.info.to_dict() if hasattr(model, "info") else model.to_dict()
    if saved["name"] != info["name"]:
        raise ValueError(
            f"{folder} was written for model {saved['name']!r}, not for {info['name']!r}"
        )
    for key in ("parameter_names", "data_names", "local_parameter_names", "config"):
        if saved.get(key) != info.get(key):
            raise ValueError(
                f"{folder} was written for model {saved['name']!r} with {key} "
                f"{saved.get(key)!r}, but the model given has {info.get(key)!r}"
            )

